#pragma once
// static_for<N>(f): f(std::integral_constant<int, 0>{}), ..., f(<N - 1>), unrolled.
//
// For register-blocked loops over arrays of vectors. GCC turns such an array
// into registers only where every index is a constant before its early
// scalarization, which runs before loops are unrolled. Indexed by a loop
// counter, the array keeps a home on the stack; in a loop with branches in its
// body (the L2 requests) every FMA's result is then stored there on every
// iteration.

#include <utility>

namespace aigc {

template <int N, typename F>
[[gnu::always_inline]] inline void static_for(F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) __attribute__((always_inline)) {
    (f(std::integral_constant<int, I>{}), ...);
  }(std::make_integer_sequence<int, N>{});
}

}  // namespace aigc
