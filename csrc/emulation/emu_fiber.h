// User-space fibers: one per emulated CUDA thread.
//
// A fiber is a stack plus a saved stack pointer. Switching saves the
// callee-saved registers on the current stack and loads another stack; on
// x86-64 that is 14 instructions (no system call, unlike swapcontext, which
// saves the signal mask at every switch). Other architectures use ucontext.
// Stacks are mmap'ed once per OS thread and reused by every block and launch;
// a PROT_NONE guard page under each turns a stack overflow into a SIGSEGV
// instead of silent corruption of the neighbouring fiber.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#if !defined(__x86_64__) || defined(AIGC_EMU_UCONTEXT)
#define AIGC_EMU_USE_UCONTEXT 1
#include <ucontext.h>
#endif

namespace emu::detail {

using FiberEntry = void (*)(void*);

#if !defined(AIGC_EMU_USE_UCONTEXT)
// emu_fiber_switch(save, load): pushes the callee-saved registers, stores rsp
// in *save, loads rsp from load, pops the registers of the other fiber, returns
// into it. emu_fiber_start is the first "return address" of a new fiber: it
// calls entry(arg) with entry in r13 and arg in r12. Defined in a COMDAT group
// so every translation unit including this header can carry a copy.
extern "C" void emu_fiber_switch(void** save_sp, void* load_sp);
extern "C" void emu_fiber_start();
__asm__(
    ".pushsection .text.emu_fiber_switch,\"axG\",@progbits,emu_fiber_switch,comdat\n"
    ".globl emu_fiber_switch\n"
    ".hidden emu_fiber_switch\n"
    ".type emu_fiber_switch,@function\n"
    "emu_fiber_switch:\n"
    "  .cfi_startproc\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    "  .cfi_endproc\n"
    ".size emu_fiber_switch, .-emu_fiber_switch\n"
    ".globl emu_fiber_start\n"
    ".hidden emu_fiber_start\n"
    ".type emu_fiber_start,@function\n"
    "emu_fiber_start:\n"
    "  .cfi_startproc\n"
    "  .cfi_undefined rip\n"  // the bottom frame of a fiber: unwinding stops here
    "  movq %r12, %rdi\n"
    "  callq *%r13\n"
    "  ud2\n"  // entries never return: they switch away for good
    "  .cfi_endproc\n"
    ".size emu_fiber_start, .-emu_fiber_start\n"
    ".popsection\n");
#endif

// A fiber stack with a guard page below it.
class FiberStack {
 public:
  explicit FiberStack(size_t usable_bytes) {
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    usable_ = (usable_bytes + page_ - 1) / page_ * page_;
    total_ = usable_ + page_;
    void* p = mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    mprotect(p, page_, PROT_NONE);
    base_ = static_cast<char*>(p);
  }
  FiberStack(const FiberStack&) = delete;
  FiberStack& operator=(const FiberStack&) = delete;
  FiberStack(FiberStack&& o) noexcept : base_(o.base_), total_(o.total_), usable_(o.usable_), page_(o.page_) {
    o.base_ = nullptr;
  }
  ~FiberStack() {
    if (base_) munmap(base_, total_);
  }
  char* bottom() const { return base_ + page_; }
  char* top() const { return base_ + total_; }
  size_t size() const { return usable_; }

 private:
  char* base_ = nullptr;
  size_t total_ = 0, usable_ = 0, page_ = 0;
};

// The saved execution state of one fiber (or of the scheduler's own stack).
struct Context {
#if defined(AIGC_EMU_USE_UCONTEXT)
  ucontext_t uc;
#else
  void* sp = nullptr;
#endif
};

#if defined(AIGC_EMU_USE_UCONTEXT)
inline void fiber_init(Context& ctx, FiberStack& stack, FiberEntry entry, void* arg, size_t top_offset = 0) {
  getcontext(&ctx.uc);
  ctx.uc.uc_stack.ss_sp = stack.bottom();
  ctx.uc.uc_stack.ss_size = stack.size() - top_offset;
  ctx.uc.uc_link = nullptr;
  // makecontext passes int arguments: split the pointer in two halves.
  auto bits = reinterpret_cast<uintptr_t>(arg);
  makecontext(&ctx.uc, reinterpret_cast<void (*)()>(+[](unsigned hi, unsigned lo, unsigned ehi, unsigned elo) {
                auto a = reinterpret_cast<void*>((uintptr_t(hi) << 32) | lo);
                auto e = reinterpret_cast<FiberEntry>((uintptr_t(ehi) << 32) | elo);
                e(a);
              }),
              4, unsigned(bits >> 32), unsigned(bits), unsigned(reinterpret_cast<uintptr_t>(entry) >> 32),
              unsigned(reinterpret_cast<uintptr_t>(entry)));
}
inline void fiber_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#else
inline void fiber_init(Context& ctx, FiberStack& stack, FiberEntry entry, void* arg, size_t top_offset = 0) {
  // Initial frame, as emu_fiber_switch pops it: r15 r14 r13 r12 rbx rbp, ret.
  // rsp after the ret must be 16-byte aligned for the call in emu_fiber_start.
  auto top = (reinterpret_cast<uintptr_t>(stack.top()) - top_offset) & ~uintptr_t(15);
  auto* sp = reinterpret_cast<void**>(top - 72);
  sp[0] = nullptr;                                      // r15
  sp[1] = nullptr;                                      // r14
  sp[2] = reinterpret_cast<void*>(entry);               // r13
  sp[3] = arg;                                          // r12
  sp[4] = nullptr;                                      // rbx
  sp[5] = nullptr;                                      // rbp (end of frame chain)
  sp[6] = reinterpret_cast<void*>(&emu_fiber_start);  // return address
  ctx.sp = sp;
}
inline void fiber_switch(Context& from, Context& to) { emu_fiber_switch(&from.sp, to.sp); }
#endif

// Stack size of each fiber: AIGC_EMU_STACK_KB (default 256 KiB, virtual memory
// only; a thread of a kernel rarely touches more than a few KiB).
inline size_t fiber_stack_bytes() {
  static const size_t bytes = [] {
    const char* env = std::getenv("AIGC_EMU_STACK_KB");
    long kb = env ? std::strtol(env, nullptr, 10) : 256;
    if (kb < 16) kb = 16;
    return size_t(kb) * 1024;
  }();
  return bytes;
}

}  // namespace emu::detail
