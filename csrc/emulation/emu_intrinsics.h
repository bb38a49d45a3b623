// CUDA device intrinsics on the emulator: barriers, warp collectives,
// atomics, memory fences, cache-hinted loads, integer and float intrinsics.
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "emu_fp16.h"
#include "emu_runtime.h"

// ---- block barrier ------------------------------------------------------------
inline void __syncthreads() { emu::detail::runner_in_kernel("__syncthreads").barrier(1); }
inline int __syncthreads_count(int predicate) {
  return emu::detail::runner_in_kernel("__syncthreads_count").barrier(predicate);
}
inline int __syncthreads_and(int predicate) {
  auto& r = emu::detail::runner_in_kernel("__syncthreads_and");
  const int count = r.barrier(predicate);
  return count == r.barrier_total();
}
inline int __syncthreads_or(int predicate) {
  return emu::detail::runner_in_kernel("__syncthreads_or").barrier(predicate) > 0;
}

// ---- warp collectives ---------------------------------------------------------
namespace emu::detail {

inline void warp_collective(WarpOp& op) { runner_in_kernel(op.name).warp_collective(op); }

inline void check_width(const char* name, int width) {
  if (width < 1 || width > 32 || (width & (width - 1)))
    throw KernelError(format("%s: width %d is not a power of two in [1, 32]", name, width));
}

enum class ShflMode { Idx, Up, Down, Bfly };

struct ShflOp : WarpOp {
  ShflMode mode;
  unsigned b, c;  // PTX operands: lane / delta / lane mask, and the clamp word
  uint64_t value, result;
};

// PTX shfl.sync semantics; a source lane outside the segment or not taking
// part gives the lane its own value.
inline void shfl_combine(WarpOp* const* lanes, unsigned group) {
  for (int lane = 0; lane < 32; ++lane) {
    if (!(group >> lane & 1)) continue;
    auto* op = static_cast<ShflOp*>(lanes[lane]);
    const int bval = int(op->b & 0x1f), cval = int(op->c & 0x1f), segmask = int((op->c >> 8) & 0x1f);
    const int max_lane = (lane & segmask) | (cval & ~segmask);
    const int min_lane = lane & segmask;
    int j = lane;
    bool in_range = false;
    switch (op->mode) {
      case ShflMode::Up:
        j = lane - bval;
        in_range = j >= max_lane;
        break;
      case ShflMode::Down:
        j = lane + bval;
        in_range = j <= max_lane;
        break;
      case ShflMode::Bfly:
        j = lane ^ bval;
        in_range = j <= max_lane;
        break;
      case ShflMode::Idx:
        j = min_lane | (bval & ~segmask);
        in_range = j <= max_lane;
        break;
    }
    if (!in_range || j < 0 || j > 31 || !(group >> j & 1)) j = lane;
    op->result = static_cast<ShflOp*>(lanes[j])->value;
  }
}

template <class T>
inline T shfl(const char* name, ShflMode mode, unsigned mask, T var, unsigned b, int width) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffles move values of at most 8 bytes");
  check_width(name, width);
  ShflOp op;
  op.name = name;
  op.mask = mask;
  op.combine = &shfl_combine;
  op.mode = mode;
  op.b = b;
  op.c = (unsigned(32 - width) << 8) | (mode == ShflMode::Up ? 0u : 0x1fu);
  op.value = 0;
  std::memcpy(&op.value, &var, sizeof(T));
  warp_collective(op);
  T out;
  std::memcpy(&out, &op.result, sizeof(T));
  return out;
}

enum class VoteMode { Ballot, Any, All, Uni, Sync };

struct VoteOp : WarpOp {
  VoteMode mode;
  int predicate;
  unsigned result;
};

inline void vote_combine(WarpOp* const* lanes, unsigned group) {
  unsigned bits = 0;
  for (int j = 0; j < 32; ++j)
    if ((group >> j & 1) && static_cast<VoteOp*>(lanes[j])->predicate) bits |= 1u << j;
  for (int j = 0; j < 32; ++j) {
    if (!(group >> j & 1)) continue;
    auto* op = static_cast<VoteOp*>(lanes[j]);
    switch (op->mode) {
      case VoteMode::Ballot:
        op->result = bits;
        break;
      case VoteMode::Any:
        op->result = bits != 0;
        break;
      case VoteMode::All:
        op->result = bits == group;
        break;
      case VoteMode::Uni:
        op->result = bits == 0 || bits == group;
        break;
      case VoteMode::Sync:
        op->result = 0;
        break;
    }
  }
}

inline unsigned vote(const char* name, VoteMode mode, unsigned mask, int predicate) {
  VoteOp op;
  op.name = name;
  op.mask = mask;
  op.combine = &vote_combine;
  op.mode = mode;
  op.predicate = predicate != 0;
  op.result = 0;
  warp_collective(op);
  return op.result;
}

enum class ReduceMode { Add, Min, Max, And, Or, Xor, MatchAny, MatchAll };

struct ReduceOp : WarpOp {
  ReduceMode mode;
  bool is_signed;
  uint64_t value, result;
  int match_all = 0;
};

inline void reduce_combine(WarpOp* const* lanes, unsigned group) {
  auto lane_op = [&](int j) { return static_cast<ReduceOp*>(lanes[j]); };
  int first = __builtin_ctz(group);
  const ReduceOp* f = lane_op(first);
  uint64_t acc = f->value;
  bool all_equal = true;
  for (int j = first + 1; j < 32; ++j) {
    if (!(group >> j & 1)) continue;
    const uint64_t v = lane_op(j)->value;
    all_equal &= v == f->value;
    switch (f->mode) {
      case ReduceMode::Add:
        acc = uint32_t(acc + v);
        break;
      case ReduceMode::Min:
        acc = f->is_signed ? uint32_t(std::min(int32_t(acc), int32_t(v))) : std::min(acc, v);
        break;
      case ReduceMode::Max:
        acc = f->is_signed ? uint32_t(std::max(int32_t(acc), int32_t(v))) : std::max(acc, v);
        break;
      case ReduceMode::And:
        acc &= v;
        break;
      case ReduceMode::Or:
        acc |= v;
        break;
      case ReduceMode::Xor:
        acc ^= v;
        break;
      default:
        break;
    }
  }
  for (int j = 0; j < 32; ++j) {
    if (!(group >> j & 1)) continue;
    ReduceOp* op = lane_op(j);
    if (f->mode == ReduceMode::MatchAny) {
      unsigned same = 0;
      for (int k = 0; k < 32; ++k)
        if ((group >> k & 1) && lane_op(k)->value == op->value) same |= 1u << k;
      op->result = same;
    } else if (f->mode == ReduceMode::MatchAll) {
      op->result = all_equal ? group : 0;
      op->match_all = all_equal;
    } else {
      op->result = acc;
    }
  }
}

inline uint64_t reduce(const char* name, ReduceMode mode, unsigned mask, uint64_t value, bool is_signed,
                       int* match_all = nullptr) {
  ReduceOp op;
  op.name = name;
  op.mask = mask;
  op.combine = &reduce_combine;
  op.mode = mode;
  op.is_signed = is_signed;
  op.value = value;
  op.result = 0;
  warp_collective(op);
  if (match_all) *match_all = op.match_all;
  return op.result;
}

template <class T>
inline uint64_t match_bits(T v) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "__match_*_sync takes 32- or 64-bit values");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}

}  // namespace emu::detail

template <class T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
  return emu::detail::shfl("__shfl_sync", emu::detail::ShflMode::Idx, mask, var, unsigned(src_lane), width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return emu::detail::shfl("__shfl_up_sync", emu::detail::ShflMode::Up, mask, var, delta, width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return emu::detail::shfl("__shfl_down_sync", emu::detail::ShflMode::Down, mask, var, delta, width);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  return emu::detail::shfl("__shfl_xor_sync", emu::detail::ShflMode::Bfly, mask, var, unsigned(lane_mask), width);
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return emu::detail::vote("__ballot_sync", emu::detail::VoteMode::Ballot, mask, predicate);
}
inline int __any_sync(unsigned mask, int predicate) {
  return int(emu::detail::vote("__any_sync", emu::detail::VoteMode::Any, mask, predicate));
}
inline int __all_sync(unsigned mask, int predicate) {
  return int(emu::detail::vote("__all_sync", emu::detail::VoteMode::All, mask, predicate));
}
inline int __uni_sync(unsigned mask, int predicate) {
  return int(emu::detail::vote("__uni_sync", emu::detail::VoteMode::Uni, mask, predicate));
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  emu::detail::vote("__syncwarp", emu::detail::VoteMode::Sync, mask, 0);
}
// The lanes of the caller's warp that execute this __activemask() together:
// the warp's other lanes run on until each has exited or waits at a
// synchronisation point, and the lanes waiting here form the mask.
inline unsigned __activemask() { return emu::detail::runner_in_kernel("__activemask").active_mask(); }

template <class T>
inline unsigned __match_any_sync(unsigned mask, T value) {
  return unsigned(emu::detail::reduce("__match_any_sync", emu::detail::ReduceMode::MatchAny, mask,
                                      emu::detail::match_bits(value), false));
}
template <class T>
inline unsigned __match_all_sync(unsigned mask, T value, int* pred) {
  return unsigned(emu::detail::reduce("__match_all_sync", emu::detail::ReduceMode::MatchAll, mask,
                                      emu::detail::match_bits(value), false, pred));
}

#define AIGC_EMU_WARP_REDUCE(NAME, MODE)                                                                       \
  inline unsigned NAME(unsigned mask, unsigned value) {                                                        \
    return unsigned(emu::detail::reduce(#NAME, emu::detail::ReduceMode::MODE, mask, value, false));             \
  }                                                                                                            \
  inline int NAME(unsigned mask, int value) {                                                                  \
    return int(emu::detail::reduce(#NAME, emu::detail::ReduceMode::MODE, mask, uint32_t(value), true));        \
  }
AIGC_EMU_WARP_REDUCE(__reduce_add_sync, Add)
AIGC_EMU_WARP_REDUCE(__reduce_min_sync, Min)
AIGC_EMU_WARP_REDUCE(__reduce_max_sync, Max)
#undef AIGC_EMU_WARP_REDUCE
inline unsigned __reduce_and_sync(unsigned mask, unsigned value) {
  return unsigned(emu::detail::reduce("__reduce_and_sync", emu::detail::ReduceMode::And, mask, value, false));
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned value) {
  return unsigned(emu::detail::reduce("__reduce_or_sync", emu::detail::ReduceMode::Or, mask, value, false));
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned value) {
  return unsigned(emu::detail::reduce("__reduce_xor_sync", emu::detail::ReduceMode::Xor, mask, value, false));
}

// ---- atomics --------------------------------------------------------------------
// Fibers switch only at synchronisation points, so within a block every
// read-modify-write is atomic anyway; the __atomic builtins keep them atomic
// when blocks run on several OS threads.
namespace emu::detail {
template <class T, class F>
inline T atomic_update(T* address, F f) {
  static_assert(sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8, "atomics on 2, 4 or 8 bytes");
  using Bits = std::conditional_t<sizeof(T) == 2, uint16_t, std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>;
  auto* word = reinterpret_cast<Bits*>(address);
  Bits old_bits = __atomic_load_n(word, __ATOMIC_RELAXED);
  for (;;) {
    T old_value;
    std::memcpy(&old_value, &old_bits, sizeof(T));
    const T new_value = f(old_value);
    Bits new_bits;
    std::memcpy(&new_bits, &new_value, sizeof(T));
    if (__atomic_compare_exchange_n(word, &old_bits, new_bits, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
      return old_value;
  }
}
}  // namespace emu::detail

#define AIGC_EMU_ATOMIC_INT(T)                                                                                  \
  inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); }                          \
  inline T atomicSub(T* a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST); }                          \
  inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); }                        \
  inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); }                          \
  inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); }                            \
  inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); }                          \
  inline T atomicMax(T* a, T v) {                                                                               \
    return emu::detail::atomic_update(a, [v](T old) { return old > v ? old : v; });                            \
  }                                                                                                             \
  inline T atomicMin(T* a, T v) {                                                                               \
    return emu::detail::atomic_update(a, [v](T old) { return old < v ? old : v; });                            \
  }                                                                                                             \
  inline T atomicCAS(T* a, T compare, T v) {                                                                    \
    __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                     \
    return compare;                                                                                             \
  }
AIGC_EMU_ATOMIC_INT(int)
AIGC_EMU_ATOMIC_INT(unsigned int)
AIGC_EMU_ATOMIC_INT(unsigned long long)
AIGC_EMU_ATOMIC_INT(long long)
#undef AIGC_EMU_ATOMIC_INT

inline unsigned short atomicCAS(unsigned short* a, unsigned short compare, unsigned short v) {
  __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;
}
inline float atomicExch(float* a, float v) {
  return emu::detail::atomic_update(a, [v](float) { return v; });
}
inline float atomicAdd(float* a, float v) {
  return emu::detail::atomic_update(a, [v](float old) { return old + v; });
}
inline double atomicAdd(double* a, double v) {
  return emu::detail::atomic_update(a, [v](double old) { return old + v; });
}
inline __half atomicAdd(__half* a, __half v) {
  return emu::detail::atomic_update(a, [v](__half old) { return __hadd(old, v); });
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* a, __nv_bfloat16 v) {
  return emu::detail::atomic_update(a, [v](__nv_bfloat16 old) { return __hadd(old, v); });
}
inline __half2 atomicAdd(__half2* a, __half2 v) {
  return emu::detail::atomic_update(a, [v](__half2 old) { return __hadd2(old, v); });
}
inline __nv_bfloat162 atomicAdd(__nv_bfloat162* a, __nv_bfloat162 v) {
  return emu::detail::atomic_update(a, [v](__nv_bfloat162 old) { return __hadd2(old, v); });
}
// atomicInc/Dec wrap around at `limit` as in CUDA.
inline unsigned atomicInc(unsigned* a, unsigned limit) {
  return emu::detail::atomic_update(a, [limit](unsigned old) { return old >= limit ? 0u : old + 1; });
}
inline unsigned atomicDec(unsigned* a, unsigned limit) {
  return emu::detail::atomic_update(a, [limit](unsigned old) { return (old == 0 || old > limit) ? limit : old - 1; });
}

// Scoped variants: one scope on a CPU.
#define AIGC_EMU_SCOPED(NAME)                                  \
  template <class... A>                                        \
  inline auto NAME##_block(A... a) -> decltype(NAME(a...)) {   \
    return NAME(a...);                                         \
  }                                                            \
  template <class... A>                                        \
  inline auto NAME##_system(A... a) -> decltype(NAME(a...)) {  \
    return NAME(a...);                                         \
  }
AIGC_EMU_SCOPED(atomicAdd)
AIGC_EMU_SCOPED(atomicSub)
AIGC_EMU_SCOPED(atomicExch)
AIGC_EMU_SCOPED(atomicMax)
AIGC_EMU_SCOPED(atomicMin)
AIGC_EMU_SCOPED(atomicCAS)
AIGC_EMU_SCOPED(atomicAnd)
AIGC_EMU_SCOPED(atomicOr)
AIGC_EMU_SCOPED(atomicXor)
#undef AIGC_EMU_SCOPED

// ---- fences, loads and stores with cache hints, timing ------------------------
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }

template <class T>
inline T __ldg(const T* p) {
  return *p;
}
template <class T>
inline T __ldcg(const T* p) {
  return *p;
}
template <class T>
inline T __ldca(const T* p) {
  return *p;
}
template <class T>
inline T __ldcs(const T* p) {
  return *p;
}
template <class T>
inline T __ldlu(const T* p) {
  return *p;
}
template <class T>
inline T __ldcv(const T* p) {
  return *p;
}
template <class T>
inline void __stwb(T* p, T v) {
  *p = v;
}
template <class T>
inline void __stcg(T* p, T v) {
  *p = v;
}
template <class T>
inline void __stcs(T* p, T v) {
  *p = v;
}
template <class T>
inline void __stwt(T* p, T v) {
  *p = v;
}

inline long long clock64() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline void __nanosleep(unsigned) {}
[[noreturn]] inline void __trap() { throw emu::KernelError("__trap() called"); }
[[noreturn]] inline void __brkpt() { throw emu::KernelError("__brkpt() called"); }

// ---- integer intrinsics -----------------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  return __builtin_bswap32(x);
}
inline unsigned long long __brevll(unsigned long long x) {
  return (uint64_t(__brev(unsigned(x))) << 32) | __brev(unsigned(x >> 32));
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const uint64_t bytes = (uint64_t(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= unsigned((bytes >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return r;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  return unsigned(((uint64_t(hi) << 32 | lo) << (shift & 31)) >> 32);
}
inline unsigned __funnelshift_lc(unsigned lo, unsigned hi, unsigned shift) {
  return unsigned(((uint64_t(hi) << 32 | lo) << std::min(shift, 32u)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  return unsigned((uint64_t(hi) << 32 | lo) >> (shift & 31));
}
inline unsigned __funnelshift_rc(unsigned lo, unsigned hi, unsigned shift) {
  return unsigned((uint64_t(hi) << 32 | lo) >> std::min(shift, 32u));
}
inline int __mulhi(int a, int b) { return int((int64_t(a) * b) >> 32); }
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((uint64_t(a) * b) >> 32); }
inline long long __mul64hi(long long a, long long b) { return (long long)((__int128(a) * b) >> 64); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)((unsigned __int128)(a)*b >> 64);
}
inline int __mul24(int a, int b) { return int(int64_t((a << 8) >> 8) * ((b << 8) >> 8)); }
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xffffffu) * (b & 0xffffffu); }
inline int __hadd(int a, int b) { return int((int64_t(a) + b) >> 1); }
inline int __rhadd(int a, int b) { return int((int64_t(a) + b + 1) >> 1); }
inline unsigned __uhadd(unsigned a, unsigned b) { return unsigned((uint64_t(a) + b) >> 1); }
inline unsigned __urhadd(unsigned a, unsigned b) { return unsigned((uint64_t(a) + b + 1) >> 1); }
inline unsigned __sad(int a, int b, unsigned c) { return c + unsigned(a > b ? a - b : b - a); }
inline unsigned __usad(unsigned a, unsigned b, unsigned c) { return c + (a > b ? a - b : b - a); }
