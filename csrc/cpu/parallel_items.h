// Dynamic work distribution for the CPU kernels.
#pragma once

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>

namespace aigc {

// Runs fn(item, thread) for every item in [0, items) on the intra-op pool,
// handing items out one at a time from a shared counter. at::parallel_for
// splits a range statically: on a shared CPU, when one thread is descheduled
// the other finishes its half and waits; here it takes the remaining items.
// Tiny problems (`work`, in the caller's unit, below `serial_work`) run on
// the caller: waking the pool would cost more than the work.
template <typename F>
void parallel_items(int64_t items, int64_t work, int64_t serial_work, const F& fn) {
  const int threads = at::get_num_threads();
  if (items <= 0) return;
  if (threads == 1 || items == 1 || work < serial_work || at::in_parallel_region()) {
    for (int64_t i = 0; i < items; ++i) fn(i, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t) {
    for (int64_t i = next.fetch_add(1); i < items; i = next.fetch_add(1))
      fn(i, static_cast<int>(begin));
  });
}

}  // namespace aigc
