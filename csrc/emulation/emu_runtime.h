// The execution engine: grids of blocks of threads with CUDA's semantics.
//
// Every CUDA thread of a block is a fiber; the fibers of a block run
// cooperatively on one OS thread, switching only at synchronisation points
// (__syncthreads, warp collectives), so a block's threads are concurrent in
// exactly the ways CUDA promises and in no other. Blocks run one after
// another (or on AIGC_EMU_THREADS OS threads, each with its own scheduler).
// Everything is deterministic with one OS thread.
//
// Misuse that is undefined behaviour on a GPU is reported as an
// emu::KernelError naming the block and thread: a deadlock (threads waiting at
// a barrier that others never reach), lanes of a warp at different collectives
// or with different masks, a lane exiting while its warp-mates wait for it.
#pragma once

#include <algorithm>
#include <cstdarg>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "emu_fiber.h"
#include "emu_types.h"

// CUDA's built-in variables. Thread-local because each OS thread running
// blocks has its own current thread; the scheduler sets them at every switch.
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
// A run-time value in CUDA (not a constant expression): the same here, so that
// code using it as an array bound fails in the emulator as under nvcc.
namespace emu::detail {
inline int warp_size() { return 32; }
}  // namespace emu::detail
inline const int warpSize = emu::detail::warp_size();

namespace emu {

// A kernel did something undefined on a GPU (deadlock, divergent collectives,
// misuse of an intrinsic): the message names the block, the thread and why.
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The launch configuration is invalid (CUDA: cudaErrorInvalidConfiguration).
struct LaunchError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Figures of the most recent launch on this OS thread.
struct LaunchStats {
  uint64_t blocks = 0;
  uint64_t threads = 0;
  uint64_t switches = 0;  // fiber switches: a measure of synchronisation work
  uint64_t barriers = 0;  // __syncthreads completed (summed over blocks)
  uint64_t warp_collectives = 0;
};

namespace detail {

// Largest dynamic shared memory a launch may ask for (sm_90's opt-in maximum).
inline constexpr size_t kMaxDynamicSmem = 227 * 1024;
// The dynamic shared memory of the running block. Every `extern __shared__ T
// name[]` of a kernel is linked to this symbol (see tests/emulation), so all
// of them alias, as in CUDA.
alignas(1024) inline thread_local unsigned char dyn_smem_pool[256 * 1024];

inline std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline std::string format(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

inline std::string lanes_to_string(unsigned mask) {
  std::string s;
  for (int i = 0; i < 32;) {
    if (!(mask >> i & 1)) {
      ++i;
      continue;
    }
    int j = i;
    while (j + 1 < 32 && (mask >> (j + 1) & 1)) ++j;
    if (!s.empty()) s += ",";
    s += (i == j) ? std::to_string(i) : std::to_string(i) + "-" + std::to_string(j);
    i = j + 1;
  }
  return s.empty() ? "none" : s;
}

// One lane's part in a warp collective. It lives on the lane's own stack while
// the lane waits; the last lane to arrive calls `combine` with every lane's
// op, which computes each lane's result in place.
struct WarpOp {
  const char* name;  // the intrinsic; lanes must agree on it and on mask
  unsigned mask;
  void (*combine)(WarpOp* const* lanes, unsigned group);
};

enum class Wait : uint8_t { None, Barrier, Warp, ActiveMask };

struct Fiber {
  Context ctx;
  uint3 tid;
  unsigned linear = 0;
  bool done = false;
  Wait wait = Wait::None;
  int barrier_count = 0;  // result of the last barrier: threads with a true predicate
  int barrier_total = 0;  // and threads that took part
  unsigned active_mask = 0;  // result of the last __activemask()
};

struct WarpState {
  WarpOp* pending[32];
  unsigned present = 0;  // lanes that exist (the last warp of a block may be partial)
  unsigned exited = 0;
  unsigned arrived = 0;        // lanes waiting in a collective (pending[lane] set)
  unsigned at_activemask = 0;  // lanes waiting in __activemask()
};

// A grid launch as the runners see it: the kernel call is type-erased.
struct GridTask {
  dim3 grid, block;
  size_t dynamic_smem = 0;
  void (*call)(void*) = nullptr;
  void* call_arg = nullptr;
};

inline bool poison_enabled() {
  static const bool on = [] {
    const char* env = std::getenv("AIGC_EMU_POISON");
    return !(env && env[0] == '0');
  }();
  return on;
}

// Runs blocks on the current OS thread. One per OS thread (thread_local).
class BlockRunner {
 public:
  static BlockRunner& current_thread() {
    static thread_local BlockRunner runner;
    return runner;
  }

  void run_blocks(const GridTask& task, uint64_t first, uint64_t last) {
    prepare(task);
    const uint64_t gx = task.grid.x, gy = task.grid.y;
    for (uint64_t b = first; b < last; ++b) {
      uint3 bidx{unsigned(b % gx), unsigned((b / gx) % gy), unsigned(b / (gx * gy))};
      run_block(bidx);
    }
  }

  LaunchStats stats;

  // --- called from inside fibers -------------------------------------------
  Fiber& self() { return fibers_[current_]; }

  int barrier(int predicate) {
    Fiber& f = self();
    ++at_barrier_;
    barrier_true_ += predicate != 0;
    f.wait = Wait::Barrier;
    if (at_barrier_ == live_) {
      release_barrier();
    } else {
      settle_activemask(f.linear);
      yield(f);
    }
    return f.barrier_count;
  }

  int barrier_total() { return self().barrier_total; }

  void warp_collective(WarpOp& op) {
    Fiber& f = self();
    const unsigned lane = f.linear & 31;
    WarpState& w = warps_[f.linear >> 5];
    if (!(op.mask >> lane & 1)) {
      throw KernelError(format("%s(mask=0x%08x) called by lane %u, which is not in its own mask", op.name,
                               op.mask, lane));
    }
    const unsigned need = op.mask & w.present;
    if (need & w.exited) {
      throw KernelError(format("%s(mask=0x%08x): lanes %s of warp %u named in the mask have already exited",
                               op.name, op.mask, lanes_to_string(need & w.exited).c_str(), f.linear >> 5));
    }
    // The group is complete when every lane of the mask waits in the same
    // intrinsic with the same mask. Lanes waiting in another collective are
    // not an error: they may be behind (say in a smaller tile's reduction) and
    // come here next; if they never can, the block deadlocks and says so.
    w.pending[lane] = &op;
    w.arrived |= 1u << lane;
    if ((w.arrived & need) == need && same_collective(w, need, op)) {
      op.combine(w.pending, need);
      ++stats.warp_collectives;
      w.arrived &= ~need;
      const unsigned base = f.linear & ~31u;
      for (unsigned bits = need; bits; bits &= bits - 1) {
        const unsigned j = unsigned(__builtin_ctz(bits));
        w.pending[j] = nullptr;
        fibers_[base + j].wait = Wait::None;
      }
    } else {
      f.wait = Wait::Warp;
      settle_activemask(f.linear);
      yield(f);
    }
  }

  static bool same_collective(const WarpState& w, unsigned need, const WarpOp& op) {
    for (unsigned bits = need; bits; bits &= bits - 1) {
      const WarpOp* other = w.pending[__builtin_ctz(bits)];
      if (other->mask != op.mask || (other->name != op.name && std::strcmp(other->name, op.name))) return false;
    }
    return true;
  }

  // __activemask(): the lanes of the warp that execute it together. The
  // warp's other lanes run until each has exited or waits somewhere; the
  // lanes then waiting in __activemask() are the active ones.
  unsigned active_mask() {
    Fiber& f = self();
    warps_[f.linear >> 5].at_activemask |= 1u << (f.linear & 31);
    f.wait = Wait::ActiveMask;
    settle_activemask(f.linear);
    if (f.wait != Wait::None) yield(f);
    return f.active_mask;
  }

 private:
  BlockRunner() = default;

  void prepare(const GridTask& task) {
    task_ = &task;
    gridDim = task.grid;
    blockDim = task.block;
    nthreads_ = task.block.x * task.block.y * task.block.z;
    const size_t want = fiber_stack_bytes();
    if (!stacks_.empty() && stacks_.front().size() != want) stacks_.clear();
    while (stacks_.size() < nthreads_) stacks_.emplace_back(want);
    fibers_.resize(nthreads_);
    warps_.resize((nthreads_ + 31) / 32);
  }

  static void fiber_main(void* arg) {
    auto* runner = &current_thread();
    auto* f = static_cast<Fiber*>(arg);
    try {
      runner->task_->call(runner->task_->call_arg);
    } catch (const std::exception& e) {
      runner->record_error(*f, e.what());
    } catch (...) {
      runner->record_error(*f, "unknown exception");
    }
    runner->on_exit(*f);
    fiber_switch(f->ctx, runner->sched_);
    __builtin_trap();  // never resumed
  }

  void record_error(const Fiber& f, const char* what) {
    if (error_) return;
    error_ = std::make_exception_ptr(KernelError(format("block (%u,%u,%u) thread (%u,%u,%u): %s", blockIdx.x,
                                                        blockIdx.y, blockIdx.z, f.tid.x, f.tid.y, f.tid.z, what)));
  }

  void on_exit(Fiber& f) {
    f.done = true;
    --live_;
    const unsigned lane = f.linear & 31;
    WarpState& w = warps_[f.linear >> 5];
    w.exited |= 1u << lane;
    for (unsigned j = 0; j < 32; ++j) {
      const WarpOp* p = w.pending[j];
      if (p && (p->mask >> lane & 1)) {
        record_error(f, format("thread exited while lane %u of its warp waits for it in %s(mask=0x%08x)", j,
                               p->name, p->mask)
                            .c_str());
        break;
      }
    }
    // Exited threads no longer count at barriers (as on Volta and later GPUs).
    if (at_barrier_ > 0 && at_barrier_ == live_) release_barrier();
    settle_activemask(f.linear);
  }

  // Completes a pending __activemask() of the warp of thread `linear` once
  // none of its lanes can run any more.
  void settle_activemask(unsigned linear) {
    WarpState& w = warps_[linear >> 5];
    if (!w.at_activemask) return;
    const unsigned base = linear & ~31u;
    for (unsigned j = 0; j < 32; ++j) {
      if (!((w.present & ~w.exited) >> j & 1)) continue;
      if (fibers_[base + j].wait == Wait::None) return;  // lane j may still get there
    }
    for (unsigned j = 0; j < 32; ++j) {
      if (!(w.at_activemask >> j & 1)) continue;
      fibers_[base + j].wait = Wait::None;
      fibers_[base + j].active_mask = w.at_activemask;
    }
    w.at_activemask = 0;
  }

  void release_barrier() {
    const int total = at_barrier_, count = barrier_true_;
    for (unsigned i = 0; i < nthreads_; ++i) {
      Fiber& f = fibers_[i];
      if (f.wait == Wait::Barrier) {
        f.wait = Wait::None;
        f.barrier_count = count;
        f.barrier_total = total;
      }
    }
    at_barrier_ = 0;
    barrier_true_ = 0;
    ++stats.barriers;
  }

  void yield(Fiber& f) {
    ++stats.switches;
    fiber_switch(f.ctx, sched_);
  }

  void run_block(uint3 bidx) {
    blockIdx = bidx;
    const dim3 b = task_->block;
    for (unsigned i = 0; i < nthreads_; ++i) {
      Fiber& f = fibers_[i];
      f.linear = i;
      f.tid = uint3{i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
      f.done = false;
      f.wait = Wait::None;
      // Stagger the stack tops: stacks are 256 KiB apart, so their tops would
      // all map to the same cache sets.
      const size_t color = (i % 8) * 4096 + (i * 37 % 64) * 64;
      fiber_init(f.ctx, stacks_[i], &fiber_main, &f, color);
    }
    for (size_t wi = 0; wi < warps_.size(); ++wi) {
      WarpState& w = warps_[wi];
      std::fill(std::begin(w.pending), std::end(w.pending), nullptr);
      const unsigned lanes = std::min<unsigned>(32, nthreads_ - unsigned(wi) * 32);
      w.present = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
      w.exited = 0;
      w.arrived = 0;
      w.at_activemask = 0;
    }
    live_ = int(nthreads_);
    at_barrier_ = 0;
    barrier_true_ = 0;
    if (task_->dynamic_smem && poison_enabled()) {
      // Shared memory starts as garbage on a GPU: NaN/-1 bytes make kernels
      // that read it before writing it fail loudly instead of passing by luck.
      std::memset(dyn_smem_pool, 0xff, task_->dynamic_smem);
    }
    ++stats.blocks;
    stats.threads += nthreads_;
    while (live_ > 0) {
      bool ran = false;
      for (unsigned i = 0; i < nthreads_; ++i) {
        Fiber& f = fibers_[i];
        if (f.done || f.wait != Wait::None) continue;
        current_ = i;
        threadIdx = f.tid;
        ++stats.switches;
        fiber_switch(sched_, f.ctx);
        ran = true;
        if (error_) {
          auto e = error_;
          error_ = nullptr;
          std::rethrow_exception(e);
        }
      }
      if (!ran && live_ > 0) throw KernelError(describe_deadlock());
    }
  }

  std::string describe_deadlock() {
    std::string msg = format("block (%u,%u,%u): deadlock: %d of %u threads still running, none can proceed.",
                             blockIdx.x, blockIdx.y, blockIdx.z, live_, nthreads_);
    if (at_barrier_ > 0) {
      msg += format(" %d threads wait at __syncthreads (threads that never reach it:", at_barrier_);
      int shown = 0;
      for (unsigned i = 0; i < nthreads_ && shown < 8; ++i) {
        const Fiber& f = fibers_[i];
        if (!f.done && f.wait != Wait::Barrier) {
          msg += format(" (%u,%u,%u)", f.tid.x, f.tid.y, f.tid.z);
          ++shown;
        }
      }
      msg += ").";
    }
    int shown = 0;
    for (size_t wi = 0; wi < warps_.size() && shown < 4; ++wi) {
      const WarpState& w = warps_[wi];
      if (!w.arrived) continue;
      ++shown;
      // Lanes grouped by the collective they wait in.
      unsigned left = w.arrived;
      int groups = 0;
      std::string detail;
      while (left) {
        const WarpOp* op = w.pending[__builtin_ctz(left)];
        unsigned same = 0;
        for (unsigned bits = left; bits; bits &= bits - 1) {
          const unsigned j = unsigned(__builtin_ctz(bits));
          const WarpOp* o = w.pending[j];
          if (o->mask == op->mask && (o->name == op->name || !std::strcmp(o->name, op->name))) same |= 1u << j;
        }
        left &= ~same;
        ++groups;
        detail += format(" lanes %s wait in %s(mask=0x%08x) for lanes %s;", lanes_to_string(same).c_str(), op->name,
                         op->mask, lanes_to_string(op->mask & w.present & ~same).c_str());
      }
      msg += format(" Warp %zu:%s", wi, detail.c_str());
      if (groups > 1)
        msg += " (divergent warp collectives: lanes of one warp wait in different intrinsics or masks)";
    }
    return msg;
  }

  const GridTask* task_ = nullptr;
  unsigned nthreads_ = 0;
  unsigned current_ = 0;
  int live_ = 0;
  int at_barrier_ = 0;
  int barrier_true_ = 0;
  std::exception_ptr error_;
  Context sched_;
  std::vector<FiberStack> stacks_;
  std::vector<Fiber> fibers_;
  std::vector<WarpState> warps_;
};

// True while the calling OS thread runs blocks of a launch.
inline thread_local bool tls_in_kernel = false;

// The runner of the calling fiber; an error outside of a kernel launch.
inline BlockRunner& runner_in_kernel(const char* what) {
  if (!tls_in_kernel) throw KernelError(std::string(what) + " called outside of a kernel launch");
  return BlockRunner::current_thread();
}

inline LaunchStats& last_stats() {
  static thread_local LaunchStats stats;
  return stats;
}

inline int configured_threads() {
  const char* env = std::getenv("AIGC_EMU_THREADS");
  int n = env ? std::atoi(env) : 1;
  return n < 1 ? 1 : n;
}

inline std::atomic<int>& num_threads_setting() {
  static std::atomic<int> n{configured_threads()};
  return n;
}

inline void check_config(const GridTask& t) {
  const dim3 g = t.grid, b = t.block;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (g.x == 0 || g.y == 0 || g.z == 0 || b.x == 0 || b.y == 0 || b.z == 0)
    throw LaunchError(format("invalid launch configuration: grid (%u,%u,%u) block (%u,%u,%u) has a zero dimension",
                             g.x, g.y, g.z, b.x, b.y, b.z));
  if (threads > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64)
    throw LaunchError(format("invalid launch configuration: block (%u,%u,%u) exceeds 1024 threads or the per-dimension "
                             "limits (1024, 1024, 64)",
                             b.x, b.y, b.z));
  if (g.x > 2147483647u || g.y > 65535 || g.z > 65535)
    throw LaunchError(format("invalid launch configuration: grid (%u,%u,%u) exceeds (2^31-1, 65535, 65535)", g.x, g.y,
                             g.z));
  if (t.dynamic_smem > kMaxDynamicSmem)
    throw LaunchError(format("invalid launch configuration: %zu bytes of dynamic shared memory exceed the %zu a block "
                             "may have (sm_90)",
                             t.dynamic_smem, kMaxDynamicSmem));
}

// Runs blocks [first, last) of the task on the calling OS thread.
inline LaunchStats run_blocks_here(const GridTask& task, uint64_t first, uint64_t last) {
  BlockRunner& runner = BlockRunner::current_thread();
  runner.stats = LaunchStats{};
  tls_in_kernel = true;
  try {
    runner.run_blocks(task, first, last);
  } catch (...) {
    tls_in_kernel = false;
    throw;
  }
  tls_in_kernel = false;
  return runner.stats;
}

inline void run_grid(const GridTask& task) {
  check_config(task);
  if (tls_in_kernel) throw KernelError("kernel launches from inside a kernel are not supported");
  const uint64_t nblocks = uint64_t(task.grid.x) * task.grid.y * task.grid.z;
  const int nworkers = int(std::min<uint64_t>(uint64_t(num_threads_setting().load()), nblocks));
  LaunchStats total;
  if (nworkers <= 1) {
    total = run_blocks_here(task, 0, nblocks);
  } else {
    // Contiguous ranges of blocks per OS thread; the first error wins.
    std::vector<std::thread> workers;
    std::vector<LaunchStats> stats(static_cast<size_t>(nworkers));
    std::exception_ptr error;
    std::mutex error_lock;
    for (int w = 0; w < nworkers; ++w) {
      const uint64_t first = nblocks * uint64_t(w) / uint64_t(nworkers);
      const uint64_t last = nblocks * uint64_t(w + 1) / uint64_t(nworkers);
      workers.emplace_back([&, w, first, last] {
        try {
          stats[size_t(w)] = run_blocks_here(task, first, last);
        } catch (...) {
          std::lock_guard<std::mutex> guard(error_lock);
          if (!error) error = std::current_exception();
        }
      });
    }
    for (auto& t : workers) t.join();
    if (error) std::rethrow_exception(error);
    for (const auto& s : stats) {
      total.blocks += s.blocks;
      total.threads += s.threads;
      total.switches += s.switches;
      total.barriers += s.barriers;
      total.warp_collectives += s.warp_collectives;
    }
  }
  last_stats() = total;
}

}  // namespace detail

// Launches `kernel` on a grid of blocks, like kernel<<<grid, block, dynamic_smem>>>(args...),
// and returns when every block has run. Errors (invalid configuration, a
// kernel's undefined behaviour) are thrown as emu::LaunchError / emu::KernelError.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t dynamic_smem, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "emu::launch: wrong number of kernel arguments");
  using Tuple = std::tuple<std::decay_t<Params>...>;
  struct Call {
    void (*kernel)(Params...);
    Tuple params;
  };
  Call call{kernel, Tuple(std::forward<Args>(args)...)};
  detail::GridTask task;
  task.grid = grid;
  task.block = block;
  task.dynamic_smem = dynamic_smem;
  task.call = [](void* p) {
    auto* c = static_cast<Call*>(p);
    std::apply(c->kernel, c->params);  // each thread gets its own copy of the parameters
  };
  task.call_arg = &call;
  detail::run_grid(task);
}

// Statistics of the most recent launch made by the calling OS thread.
inline LaunchStats last_launch_stats() { return detail::last_stats(); }

// OS threads that run the blocks of a launch (default AIGC_EMU_THREADS or 1).
// More than one makes float atomics order-dependent, hence non-deterministic.
inline void set_num_threads(int n) { detail::num_threads_setting() = n < 1 ? 1 : n; }
inline int num_threads() { return detail::num_threads_setting().load(); }

}  // namespace emu
