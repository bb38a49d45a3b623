// The commonly used part of cooperative_groups (and cuda_pipeline's
// primitives) on the emulator: this_thread_block(), tiled_partition<N>(),
// thread_block_tile<N> shuffles and votes, cg::reduce with cg::plus /
// cg::less / cg::greater / bit ops, cg::inclusive_scan / exclusive_scan.
// Grid-wide groups (grid sync) need cooperative launches: not emulated.
#pragma once

#include <cstddef>
#include <cstring>
#include <type_traits>

#include "emu_intrinsics.h"
#include "emu_runtime.h"

namespace cooperative_groups {

class thread_block {
 public:
  void sync() const { __syncthreads(); }
  static unsigned long long thread_rank() {
    return threadIdx.x + blockDim.x * (threadIdx.y + static_cast<unsigned long long>(blockDim.y) * threadIdx.z);
  }
  static unsigned long long num_threads() {
    return static_cast<unsigned long long>(blockDim.x) * blockDim.y * blockDim.z;
  }
  static unsigned long long size() { return num_threads(); }
  static dim3 group_index() { return dim3(blockIdx); }
  static dim3 thread_index() { return dim3(threadIdx); }
  static dim3 dim_threads() { return blockDim; }
  static dim3 group_dim() { return blockDim; }
};

inline thread_block this_thread_block() { return thread_block(); }
inline void sync(const thread_block& g) { g.sync(); }

template <unsigned N>
class thread_block_tile {
  static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "tiles of 1, 2, 4, 8, 16 or 32 threads");

 public:
  static constexpr unsigned num_threads_value = N;

  // The lanes of the caller's warp that form its tile.
  static unsigned mask() {
    if constexpr (N == 32) {
      return 0xffffffffu;
    } else {
      const unsigned lane = static_cast<unsigned>(thread_block::thread_rank()) & 31u;
      return ((1u << N) - 1u) << (lane & ~(N - 1u));
    }
  }
  void sync() const { __syncwarp(mask()); }
  static unsigned long long thread_rank() { return thread_block::thread_rank() & (N - 1); }
  static unsigned long long num_threads() { return N; }
  static unsigned long long size() { return N; }
  static unsigned long long meta_group_rank() { return thread_block::thread_rank() / N; }
  static unsigned long long meta_group_size() { return (thread_block::num_threads() + N - 1) / N; }

  template <class T>
  T shfl(T var, int src_rank) const {
    return __shfl_sync(mask(), var, src_rank, N);
  }
  template <class T>
  T shfl_down(T var, unsigned delta) const {
    return __shfl_down_sync(mask(), var, delta, N);
  }
  template <class T>
  T shfl_up(T var, unsigned delta) const {
    return __shfl_up_sync(mask(), var, delta, N);
  }
  template <class T>
  T shfl_xor(T var, unsigned lane_mask) const {
    return __shfl_xor_sync(mask(), var, int(lane_mask), N);
  }
  int any(int predicate) const { return __any_sync(mask(), predicate); }
  int all(int predicate) const { return __all_sync(mask(), predicate); }
  unsigned ballot(int predicate) const {
    const unsigned shift = static_cast<unsigned>(thread_block::thread_rank()) & 31u & ~(N - 1u);
    return __ballot_sync(mask(), predicate) >> shift;
  }
  template <class T>
  unsigned match_any(T value) const {
    const unsigned shift = static_cast<unsigned>(thread_block::thread_rank()) & 31u & ~(N - 1u);
    return __match_any_sync(mask(), value) >> shift;
  }
};

template <unsigned N>
inline thread_block_tile<N> tiled_partition(const thread_block&) {
  return thread_block_tile<N>();
}

template <class T>
struct plus {
  T operator()(const T& a, const T& b) const { return a + b; }
};
template <class T>
struct less {
  T operator()(const T& a, const T& b) const { return b < a ? b : a; }  // the smaller: cg's min
};
template <class T>
struct greater {
  T operator()(const T& a, const T& b) const { return a < b ? b : a; }  // the larger: cg's max
};
template <class T>
struct bit_and {
  T operator()(const T& a, const T& b) const { return a & b; }
};
template <class T>
struct bit_or {
  T operator()(const T& a, const T& b) const { return a | b; }
};
template <class T>
struct bit_xor {
  T operator()(const T& a, const T& b) const { return a ^ b; }
};

// Every thread of the tile gets op folded over the tile's values.
template <unsigned N, class T, class Op>
inline T reduce(const thread_block_tile<N>& tile, T value, Op op) {
  for (unsigned offset = N / 2; offset > 0; offset /= 2) value = op(value, tile.shfl_xor(value, offset));
  return value;
}

template <unsigned N, class T, class Op>
inline T inclusive_scan(const thread_block_tile<N>& tile, T value, Op op) {
  const unsigned rank = static_cast<unsigned>(tile.thread_rank());
  for (unsigned d = 1; d < N; d *= 2) {
    const T up = tile.shfl_up(value, d);
    if (rank >= d) value = op(value, up);
  }
  return value;
}
template <unsigned N, class T>
inline T inclusive_scan(const thread_block_tile<N>& tile, T value) {
  return inclusive_scan(tile, value, plus<T>());
}

// exclusive_scan: rank 0 gets T() (cg leaves it undefined for other operators).
template <unsigned N, class T, class Op>
inline T exclusive_scan(const thread_block_tile<N>& tile, T value, Op op) {
  const T inclusive = inclusive_scan(tile, value, op);
  const T shifted = tile.shfl_up(inclusive, 1);
  return tile.thread_rank() == 0 ? T() : shifted;
}
template <unsigned N, class T>
inline T exclusive_scan(const thread_block_tile<N>& tile, T value) {
  return exclusive_scan(tile, value, plus<T>());
}

}  // namespace cooperative_groups

// cuda_pipeline_primitives.h: the copies happen at once, so commits and
// waits have nothing left to wait for.
inline void __pipeline_memcpy_async(void* dst, const void* src, size_t size_and_align, size_t zfill = 0) {
  std::memcpy(dst, src, size_and_align - zfill);
  if (zfill) std::memset(static_cast<char*>(dst) + (size_and_align - zfill), 0, zfill);
}
inline void __pipeline_commit() {}
inline void __pipeline_wait_prior(size_t) {}
