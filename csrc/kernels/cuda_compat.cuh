// The one header a kernel file (csrc/kernels/*.cuh) includes to get CUDA.
//
// Under nvcc it is the CUDA toolkit's headers; under a host C++ compiler it is
// the CPU emulation of CUDA (csrc/emulation/cuda_emulation.h), which runs the
// same source with CUDA's semantics in the tests (see tests/emulation/README.md).
//
// Kernels get from here: the runtime and intrinsics, __half / __nv_bfloat16,
// nvcuda::wmma, cooperative_groups (thread_block, tiled_partition, reduce,
// scans), __pipeline_memcpy_async and the CUDART_* constants of
// math_constants.h; they include no CUDA header themselves.
//
// Portable extras defined here for both:
//   AIGC_CUDA_EMULATION        1 in the emulator, 0 under nvcc.
//   AIGC_DEVICE_ARCH           __CUDA_ARCH__ in nvcc's device pass, 0 in its host
//                              pass, AIGC_EMU_ARCH (default 800) in the emulator:
//                              use it instead of __CUDA_ARCH__ to select code paths.
//   AIGC_DYNAMIC_SHARED(T, p)  declares `T* p` pointing at the block's dynamic shared
//                              memory (`extern __shared__ T buf[];` works as well).
#pragma once

#if defined(__CUDACC__)

#include <cooperative_groups.h>
#include <cooperative_groups/reduce.h>
#include <cooperative_groups/scan.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline_primitives.h>
#include <cuda_runtime.h>
#include <math_constants.h>
#include <mma.h>

#define AIGC_CUDA_EMULATION 0
#if defined(__CUDA_ARCH__)
#define AIGC_DEVICE_ARCH __CUDA_ARCH__
#else
#define AIGC_DEVICE_ARCH 0
#endif
#define AIGC_DYNAMIC_SHARED(T, name)                              \
  extern __shared__ __align__(16) unsigned char aigc_dynamic_smem_[]; \
  T* name = reinterpret_cast<T*>(aigc_dynamic_smem_)

#else  // host compiler: the emulator

#include "../emulation/cuda_emulation.h"

#ifndef AIGC_EMU_ARCH
#define AIGC_EMU_ARCH 800
#endif
#define AIGC_DEVICE_ARCH AIGC_EMU_ARCH
#define AIGC_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::emu::detail::dyn_smem_pool)

#endif
