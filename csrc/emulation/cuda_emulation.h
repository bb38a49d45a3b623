// CUDA on the CPU: compile kernels written for nvcc with g++ and run them
// with CUDA's execution semantics (see README in tests/emulation/).
//
// Kernels do not include this file directly: they include
// csrc/kernels/cuda_compat.cuh, which picks the CUDA headers under nvcc and
// this header otherwise. A host program launches kernels with
//
//   emu::launch(kernel, dim3 grid, dim3 block, size_t dynamic_smem_bytes, args...);
//
// What is emulated:
//   - gridDim / blockDim / blockIdx / threadIdx / warpSize;
//   - the threads of a block as concurrent fibers; __syncthreads(_count/_and/_or)
//     as a real barrier; warp collectives (__shfl*_sync, __ballot/__any/__all_sync,
//     __match_*_sync, __reduce_*_sync, __syncwarp) as rendezvous of the warp's lanes;
//   - __shared__ memory per block, static and `extern __shared__ T buf[]` (dynamic,
//     sized by the launch), poisoned with 0xff bytes at the start of each block;
//   - atomics, fences, cache-hinted loads, integer and fast-math intrinsics;
//   - __half / __nv_bfloat16 (+ pairs) with bit-exact conversions;
//   - nvcuda::wmma fragments, load/store/mma as warp collectives;
//   - cooperative_groups: thread_block, tiled_partition<N>, reduce, scans;
//     cuda_pipeline's __pipeline_memcpy_async/commit/wait_prior.
// What is not: inline PTX (asm), textures, cluster/TMA features, named barriers,
// dynamic parallelism, and divergence inside a warp (__activemask is the set of
// lanes that have not exited).
#pragma once

// Standard headers first: the qualifier macros below must not leak into them
// (libstdc++ spells __attribute__((__noinline__)), for one).
#include <algorithm>
#include <atomic>
#include <cassert>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "emu_types.h"
#include "emu_fiber.h"
#include "emu_runtime.h"
#include "emu_fp16.h"
#include "emu_intrinsics.h"
#include "emu_math.h"
#include "emu_wmma.h"
#include "emu_cooperative_groups.h"
#include "emu_dynsmem_link.h"

#define AIGC_CUDA_EMULATION 1

// Function and variable qualifiers. __shared__ is thread_local: at block
// scope that means static storage (one variable shared by all the fibers of
// the OS thread running the block, i.e. by the block's threads), and it stays
// valid after `extern` for dynamic shared memory.
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __shared__ thread_local
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __grid_constant__
#define __device_builtin__
#define __cudart_builtin__

typedef struct emu_stream* cudaStream_t;

// A failed device assert() ends the launch with an error (on a GPU:
// cudaErrorAssert) instead of aborting the process: pytest reports it. Headers
// that include <cassert> again after this one restore the standard macro.
#if !defined(NDEBUG)
namespace emu::detail {
[[noreturn]] inline void device_assert_fail(const char* expr, const char* file, int line) {
  throw KernelError(format("assertion `%s` failed at %s:%d", expr, file, line));
}
}  // namespace emu::detail
#undef assert
#define assert(expr) ((expr) ? static_cast<void>(0) : ::emu::detail::device_assert_fail(#expr, __FILE__, __LINE__))
#endif
