// Threads of the decode kernels' own, kept by the process and shared by every
// calling thread.
//
// Why not OpenMP for them: a decode step makes about 150 small parallel calls
// a token, each a few microseconds of work a thread, so a call must find the
// other threads awake. libgomp keeps its workers spinning between parallel
// regions only while the process has no more OpenMP threads than cores; every
// Python thread that runs parallel regions gets a team of its own (a server's
// decode thread besides the main thread is enough), and from then on each
// region of every team wakes sleeping workers. These threads spin for a while
// after each call, whoever made it, and then sleep.
//
// Sharing the cores with OpenMP's workers (a prefill runs torch operations
// between quantized matmuls): a spinning pool thread yields its core every few
// microseconds, and a call never waits for a pool thread that has not started
// on it. The call's items are claimed dynamically, so the caller runs any that
// no pool thread took and then closes the call; a pool thread that comes later
// skips it. A call therefore costs at worst its serial time, never a wait for
// the scheduler to give a descheduled thread its core back.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace aigc {

class KernelThreads {
 public:
  // The process's pool (a fresh one in a child after fork: the parent's
  // threads do not exist there).
  static KernelThreads& instance() {
    static const bool registered = [] {
      pthread_atfork(nullptr, nullptr, [] { current() = new KernelThreads(); });
      return true;
    }();
    (void)registered;
    return *current();
  }

  // Runs body(t) for t in [0, n), the caller as t = 0 and n - 1 pool threads,
  // and returns when all have finished (rethrowing the first exception).
  // Returns false, having run nothing, while another call has the pool (a
  // second calling thread, or a call from inside a body): the caller then
  // runs its work itself.
  template <typename F>
  bool try_run(int n, const F& body) {
    // Type-erased by hand: a std::function of a capturing lambda may allocate,
    // once a call, on a path a decode step takes ~150 times a token.
    return try_run(n, &body, [](const void* f, int t) { (*static_cast<const F*>(f))(t); });
  }

 private:
  using Body = void (*)(const void* body, int thread);

  bool try_run(int n, const void* body, Body call) {
    bool idle = false;
    if (!busy_.compare_exchange_strong(idle, true, std::memory_order_acquire)) return false;
    struct Release {
      std::atomic<bool>& busy;
      ~Release() { busy.store(false, std::memory_order_release); }
    } release{busy_};
    while (static_cast<int>(workers_) < n - 1) {
      const uint64_t seen = generation_.load(std::memory_order_relaxed);
      const int id = static_cast<int>(++workers_);
      std::thread([this, id, seen] { work(id, seen); }).detach();
    }
    body_ = body;
    call_ = call;
    active_ = n;
    error_ = nullptr;
    finished_.store(0, std::memory_order_relaxed);
    const uint64_t generation = generation_.load(std::memory_order_relaxed) + 1;
    entries_.store(generation << kGenerationShift, std::memory_order_relaxed);
    generation_.store(generation, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    run(0);
    // Closed: from now on a pool thread arriving skips this call. Those that
    // entered may still be finishing the items they claimed.
    const uint64_t entered = entries_.fetch_or(kClosed, std::memory_order_acq_rel) & kCountMask;
    for (int spin = 0; finished_.load(std::memory_order_acquire) < static_cast<int>(entered);
         ++spin) {
      if (spin < kCallerSpins)
        pause();
      else
        std::this_thread::yield();  // a pool thread was descheduled mid-item
    }
    if (error_) std::rethrow_exception(error_);
    return true;
  }

  // How long a pool thread spins for the next call before it sleeps: longer
  // than the gaps between the calls of a decode step, short next to the gap
  // between a server's tokens.
  static constexpr std::chrono::microseconds kSpinTime{200};
  static constexpr int kCallerSpins = 1 << 16;
  // entries_: the call's generation (high bits), closed (bit 31), and how many
  // pool threads entered it (low bits).
  static constexpr int kGenerationShift = 32;
  static constexpr uint64_t kClosed = uint64_t{1} << 31;
  static constexpr uint64_t kCountMask = kClosed - 1;

  static KernelThreads*& current() {
    static KernelThreads* pool = new KernelThreads();  // never destroyed: its threads never end
    return pool;
  }

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
  }

  void run(int id) {
    try {
      call_(body_, id);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void work(int id, uint64_t seen) {
    for (;;) {
      auto since = std::chrono::steady_clock::now();
      uint64_t now_at;
      for (int spin = 0; (now_at = generation_.load(std::memory_order_acquire)) == seen; ++spin) {
        if ((spin & 255) != 255) {
          pause();
          continue;
        }
        if (std::chrono::steady_clock::now() - since < kSpinTime) {
          // Every few microseconds, the core to any other thread that is ready to run
          // on it: between kernel calls the caller may run torch operations on
          // OpenMP's workers (a prefill does), which would otherwise wait for this
          // spin to end. With nothing else ready, this returns at once.
          std::this_thread::yield();
          continue;
        }
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
        since = std::chrono::steady_clock::now();
      }
      seen = now_at;
      if (enter(now_at)) {
        if (id < active_) run(id);
        finished_.fetch_add(1, std::memory_order_release);
      }
    }
  }

  // Joins call `generation` unless its caller has closed it (or moved on).
  bool enter(uint64_t generation) {
    uint64_t state = entries_.load(std::memory_order_acquire);
    while ((state >> kGenerationShift) == (generation & 0xffffffffu) && !(state & kClosed)) {
      if (entries_.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel))
        return true;
    }
    return false;
  }

  std::atomic<bool> busy_{false};
  std::atomic<size_t> workers_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> entries_{0};
  std::atomic<int> finished_{0};
  std::atomic<int> sleepers_{0};
  // Written by the caller before it bumps generation_, read by the threads after.
  const void* body_ = nullptr;
  Body call_ = nullptr;
  int active_ = 0;
  std::exception_ptr error_;
  std::mutex error_mutex_;
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
};

}  // namespace aigc
