// A kernel that must spill: 96 live floats per thread under a 32-register cap
// (__launch_bounds__(1024, 2) on a 64K-register SM). tests/test_ptxas.py
// checks that scripts/ptxas_report.py --fail-on-spill catches it. Not one of
// the report's default sources.
#include "kernels/cuda_compat.cuh"

__global__ void __launch_bounds__(1024, 2) spilling_kernel(const float* __restrict__ in, float* __restrict__ out,
                                                           int rounds) {
  float acc[96];
#pragma unroll
  for (int i = 0; i < 96; ++i) acc[i] = in[threadIdx.x + i * 1024];
  for (int r = 0; r < rounds; ++r) {
#pragma unroll
    for (int i = 0; i < 96; ++i) acc[i] = acc[i] * acc[(i + 7) % 96] + 1.0f;
  }
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < 96; ++i) s += acc[i];
  out[threadIdx.x] = s;
}
