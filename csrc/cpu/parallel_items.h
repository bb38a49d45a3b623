// Dynamic work distribution for the CPU kernels.
#pragma once

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>

#include "cpu/kernel_threads.h"

namespace aigc {

// Which threads run the items: torch's intra-op pool (OpenMP), or the decode
// kernels' own (kernel_threads.h), for the calls a decode step makes by the
// hundred. Either way the thread count is at::get_num_threads().
enum class Team { kIntraOp, kKernelThreads };

// Runs fn(item, thread, next) for every item in [0, items) on `team`,
// handing items out one at a time from a shared counter. at::parallel_for
// splits a range statically: on a shared CPU, when one thread is descheduled
// the other finishes its half and waits; here it takes the remaining items.
// next() tells a kernel that prefetches across items which item this thread
// runs after `item` (-1: none is left): its first call claims that item from
// the counter. Without the claim the next item is unknown until this one
// ends, and items[item + 1] is, with two threads, usually the one the other
// thread is already running. Tiny problems (`work`, in the caller's unit,
// below `serial_work`) run on the caller: waking the pool would cost more
// than the work.
template <typename F>
void parallel_items_claiming_next(int64_t items, int64_t work, int64_t serial_work, const F& fn,
                                  Team team = Team::kIntraOp) {
  const int threads = at::get_num_threads();
  if (items <= 0) return;
  if (threads == 1 || items == 1 || work < serial_work || at::in_parallel_region()) {
    for (int64_t i = 0; i < items; ++i)
      fn(i, 0, [&] { return i + 1 < items ? i + 1 : int64_t{-1}; });
    return;
  }
  std::atomic<int64_t> counter{0};
  const auto member = [&](int thread) {
    int64_t i = counter.fetch_add(1);
    while (i < items) {
      int64_t claimed = -1;
      fn(i, thread, [&] {
        if (claimed < 0) claimed = counter.fetch_add(1);
        return claimed < items ? claimed : int64_t{-1};
      });
      i = claimed >= 0 ? claimed : counter.fetch_add(1);
    }
  };
  if (team == Team::kKernelThreads) {
    // The pool busy with another caller's call: this one runs its items itself.
    if (!KernelThreads::instance().try_run(threads, member)) member(0);
    return;
  }
  at::parallel_for(0, threads, 1, [&](int64_t thread, int64_t) { member(static_cast<int>(thread)); });
}

// parallel_items_claiming_next for kernels that need only fn(item, thread).
template <typename F>
void parallel_items(int64_t items, int64_t work, int64_t serial_work, const F& fn,
                    Team team = Team::kIntraOp) {
  parallel_items_claiming_next(
      items, work, serial_work, [&](int64_t item, int thread, const auto&) { fn(item, thread); },
      team);
}

}  // namespace aigc
