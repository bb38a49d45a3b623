// nvcuda::wmma (tensor-core fragments) as warp-collective operations.
//
// A fragment's distribution over the 32 lanes is opaque in CUDA; here lane l
// holds elements [l*n, (l+1)*n) of the tile in row-major order (n =
// num_elements), so element-wise loops over frag.x[] act on every element
// exactly once, as they must. load/store/mma are rendezvous of the warp: the
// last lane to arrive checks that every lane passed the same pointer, stride
// and layout (CUDA requires it), and moves or multiplies the whole tile for
// all lanes. Pointers must be 256-bit aligned and strides multiples of 16
// bytes, as documented for the hardware; violations raise emu::KernelError.
//
// Products of 16-bit inputs are exact in float; they are accumulated in float
// in k order (tensor cores also accumulate in at least fp32). tf32 inputs keep
// only their top 19 bits, as the hardware reads them.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "emu_fp16.h"
#include "emu_intrinsics.h"
#include "emu_runtime.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace precision {
struct tf32 {};
}  // namespace precision

// Rounds to tf32 (10 explicit mantissa bits), to nearest with ties away from zero (cvt.rna.tf32.f32).
inline float __float_to_tf32(float f) {
  if (!std::isfinite(f)) return f;
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = (u + 0x1000u) & 0xffffe000u;
  std::memcpy(&f, &u, 4);
  return f;
}

namespace detail {

template <class T>
struct storage {
  using type = T;
};
template <>
struct storage<precision::tf32> {
  using type = float;
};

// Rows and columns of the tile each kind of fragment holds.
template <class Use, int M, int N, int K>
struct tile_shape;
template <int M, int N, int K>
struct tile_shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct tile_shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct tile_shape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

template <class T>
inline float to_float(T v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __half2float(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else {
    return float(v);
  }
}
template <class T>
inline T from_float(float v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __float2half(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16(v);
  } else {
    return T(v);
  }
}

template <class Use, int M, int N, int K, class T>
constexpr bool valid_shape() {
  constexpr bool k16 = (M == 16 && N == 16 && K == 16) || (M == 32 && N == 8 && K == 16) ||
                       (M == 8 && N == 32 && K == 16);
  if constexpr (std::is_same_v<T, precision::tf32>) {
    return M == 16 && N == 16 && K == 8;
  } else if constexpr (std::is_same_v<T, double>) {
    return M == 8 && N == 8 && K == 4;
  } else if constexpr (std::is_same_v<Use, accumulator> && std::is_same_v<T, float>) {
    return k16 || (M == 16 && N == 16 && K == 8);  // also the tf32 products
  } else {
    return k16;
  }
}

}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment {
  static_assert(detail::valid_shape<Use, M, N, K, T>(), "wmma: unsupported fragment shape for this element type");
  static_assert(!std::is_same_v<Use, accumulator> || std::is_void_v<Layout>,
                "wmma: accumulator fragments take their layout at load/store time");

 public:
  using element_type = T;
  using storage_element_type = typename detail::storage<T>::type;
  using use = Use;
  using layout = Layout;
  static constexpr int rows = detail::tile_shape<Use, M, N, K>::rows;
  static constexpr int cols = detail::tile_shape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols / 32;
  storage_element_type x[num_elements];
};

namespace detail {

// One lane's part in a wmma collective.
struct WmmaOp : emu::detail::WarpOp {
  const void* ptr = nullptr;  // memory operand (load/store)
  unsigned ldm = 0;
  int layout = 0;             // 0 row-major, 1 column-major
  void* frag = nullptr;       // the lane's destination fragment
  const void* a = nullptr;    // mma sources
  const void* b = nullptr;
  const void* c = nullptr;
  bool satf = false;
};

inline void check_memory_operand(const char* name, const void* ptr, unsigned ldm, size_t elem_bytes) {
  using emu::detail::format;
  if (reinterpret_cast<uintptr_t>(ptr) % 32)
    throw emu::KernelError(format("%s: pointer %p is not 256-bit (32-byte) aligned", name, ptr));
  if ((size_t(ldm) * elem_bytes) % 16)
    throw emu::KernelError(format("%s: ldm %u is not a multiple of 16 bytes (%zu elements)", name, ldm,
                                  16 / elem_bytes));
}

// Every lane of the group must pass the same memory operand.
inline const WmmaOp* agreed_operand(emu::detail::WarpOp* const* lanes, unsigned group) {
  using emu::detail::format;
  const int first = __builtin_ctz(group);
  const auto* f = static_cast<const WmmaOp*>(lanes[first]);
  if (group != 0xffffffffu)
    throw emu::KernelError(format("%s needs all 32 lanes of the warp; lanes %s took part", f->name,
                                  emu::detail::lanes_to_string(group).c_str()));
  for (int j = 0; j < 32; ++j) {
    const auto* o = static_cast<const WmmaOp*>(lanes[j]);
    if (o->ptr != f->ptr || o->ldm != f->ldm || o->layout != f->layout)
      throw emu::KernelError(format("%s: lanes disagree: lane %d passed (%p, ldm %u, %s) and lane %d (%p, ldm %u, %s)",
                                    f->name, first, f->ptr, f->ldm, f->layout ? "col" : "row", j, o->ptr, o->ldm,
                                    o->layout ? "col" : "row"));
  }
  return f;
}

template <class Frag>
void load_combine(emu::detail::WarpOp* const* lanes, unsigned group) {
  using S = typename Frag::storage_element_type;
  const WmmaOp* f = agreed_operand(lanes, group);
  const S* p = static_cast<const S*>(f->ptr);
  for (int lane = 0; lane < 32; ++lane) {
    auto* frag = static_cast<Frag*>(static_cast<WmmaOp*>(lanes[lane])->frag);
    for (int e = 0; e < Frag::num_elements; ++e) {
      const int idx = lane * Frag::num_elements + e, r = idx / Frag::cols, c = idx % Frag::cols;
      frag->x[e] = f->layout == 0 ? p[size_t(r) * f->ldm + c] : p[size_t(c) * f->ldm + r];
    }
  }
}

template <class Frag>
void store_combine(emu::detail::WarpOp* const* lanes, unsigned group) {
  using S = typename Frag::storage_element_type;
  const WmmaOp* f = agreed_operand(lanes, group);
  S* p = static_cast<S*>(const_cast<void*>(f->ptr));
  for (int lane = 0; lane < 32; ++lane) {
    const auto* frag = static_cast<const Frag*>(static_cast<WmmaOp*>(lanes[lane])->frag);
    for (int e = 0; e < Frag::num_elements; ++e) {
      const int idx = lane * Frag::num_elements + e, r = idx / Frag::cols, c = idx % Frag::cols;
      (f->layout == 0 ? p[size_t(r) * f->ldm + c] : p[size_t(c) * f->ldm + r]) = frag->x[e];
    }
  }
}

// Gathers a whole tile from the 32 lanes' fragments as floats (or ints).
template <class Acc, class Frag, class Get>
void gather(Acc* tile, emu::detail::WarpOp* const* lanes, Get get) {
  for (int lane = 0; lane < 32; ++lane) {
    const Frag* frag = static_cast<const Frag*>(get(static_cast<WmmaOp*>(lanes[lane])));
    for (int e = 0; e < Frag::num_elements; ++e) {
      using S = typename Frag::storage_element_type;
      const S v = frag->x[e];
      Acc a;
      if constexpr (std::is_same_v<typename Frag::element_type, precision::tf32>) {
        uint32_t u;
        std::memcpy(&u, &v, 4);
        u &= 0xffffe000u;  // the tensor core reads 19 bits
        float t;
        std::memcpy(&t, &u, 4);
        a = t;
      } else if constexpr (std::is_integral_v<Acc>) {
        a = Acc(v);
      } else {
        a = to_float(v);
      }
      tile[lane * Frag::num_elements + e] = a;
    }
  }
}

template <class FD, class FA, class FB, class FC>
void mma_combine(emu::detail::WarpOp* const* lanes, unsigned group) {
  using emu::detail::format;
  if (group != 0xffffffffu)
    throw emu::KernelError(format("wmma::mma_sync needs all 32 lanes of the warp; lanes %s took part",
                                  emu::detail::lanes_to_string(group).c_str()));
  constexpr int M = FA::rows, K = FA::cols, N = FB::cols;
  using Acc = std::conditional_t<std::is_integral_v<typename FC::storage_element_type>, int, float>;
  Acc a[M * K], b[K * N], c[M * N];
  gather<Acc, FA>(a, lanes, [](const WmmaOp* op) { return op->a; });
  gather<Acc, FB>(b, lanes, [](const WmmaOp* op) { return op->b; });
  gather<Acc, FC>(c, lanes, [](const WmmaOp* op) { return op->c; });
  Acc d[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      Acc acc = c[i * N + j];
      for (int k = 0; k < K; ++k) acc += a[i * K + k] * b[k * N + j];
      d[i * N + j] = acc;
    }
  const bool satf = static_cast<WmmaOp*>(lanes[0])->satf;
  using SD = typename FD::storage_element_type;
  for (int lane = 0; lane < 32; ++lane) {
    auto* frag = static_cast<FD*>(static_cast<WmmaOp*>(lanes[lane])->frag);
    for (int e = 0; e < FD::num_elements; ++e) {
      Acc v = d[lane * FD::num_elements + e];
      if constexpr (std::is_floating_point_v<Acc>) {
        if (satf) v = std::isnan(v) ? 0.0f : std::fmax(std::fmin(v, std::numeric_limits<float>::max()), -std::numeric_limits<float>::max());
        frag->x[e] = from_float<SD>(v);
      } else {
        frag->x[e] = SD(v);
      }
    }
  }
}

template <class Frag>
void run_memory_op(const char* name, void (*combine)(emu::detail::WarpOp* const*, unsigned), Frag& frag,
                   const void* ptr, unsigned ldm, int layout) {
  check_memory_operand(name, ptr, ldm, sizeof(typename Frag::storage_element_type));
  WmmaOp op;
  op.name = name;
  op.mask = 0xffffffffu;
  op.combine = combine;
  op.ptr = ptr;
  op.ldm = ldm;
  op.layout = layout;
  op.frag = &frag;
  emu::detail::warp_collective(op);
}

template <class L>
constexpr int layout_code() {
  static_assert(std::is_same_v<L, row_major> || std::is_same_v<L, col_major>,
                "wmma: matrix_a/matrix_b fragments need a row_major or col_major layout");
  return std::is_same_v<L, row_major> ? 0 : 1;
}

}  // namespace detail

template <class Use, int M, int N, int K, class T, class L, class V>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, const V& v) {
  using S = typename fragment<Use, M, N, K, T, L>::storage_element_type;
  for (auto& e : f.x) e = static_cast<S>(v);
}

// matrix_a / matrix_b: the layout is part of the fragment's type.
template <class Use, int M, int N, int K, class T, class L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f,
                             const typename fragment<Use, M, N, K, T, L>::storage_element_type* p, unsigned ldm) {
  using Frag = fragment<Use, M, N, K, T, L>;
  detail::run_memory_op("wmma::load_matrix_sync", &detail::load_combine<Frag>, f, p, ldm, detail::layout_code<L>());
}

// accumulator: the layout is given at run time.
template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm, layout_t layout) {
  using Frag = fragment<accumulator, M, N, K, T>;
  detail::run_memory_op("wmma::load_matrix_sync", &detail::load_combine<Frag>, f, p, ldm,
                        layout == mem_row_major ? 0 : 1);
}

template <int M, int N, int K, class T>
inline void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout) {
  using Frag = fragment<accumulator, M, N, K, T>;
  detail::run_memory_op("wmma::store_matrix_sync", &detail::store_combine<Frag>, const_cast<Frag&>(f), p, ldm,
                        layout == mem_row_major ? 0 : 1);
}

template <int M, int N, int K, class TA, class LA, class TB, class LB, class TC, class TD>
inline void mma_sync(fragment<accumulator, M, N, K, TD>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, TC>& c,
                     bool satf = false) {
  using FD = fragment<accumulator, M, N, K, TD>;
  using FA = fragment<matrix_a, M, N, K, TA, LA>;
  using FB = fragment<matrix_b, M, N, K, TB, LB>;
  using FC = fragment<accumulator, M, N, K, TC>;
  detail::WmmaOp op;
  op.name = "wmma::mma_sync";
  op.mask = 0xffffffffu;
  op.combine = &detail::mma_combine<FD, FA, FB, FC>;
  op.frag = &d;
  op.a = &a;
  op.b = &b;
  op.c = &c;
  op.satf = satf;
  emu::detail::warp_collective(op);
}

}  // namespace wmma
}  // namespace nvcuda
