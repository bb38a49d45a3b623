// Instantiates the self-test kernels for nvcc, so scripts/ptxas_report.py can
// report their registers, spills and shared memory (no torch involved).
#include "selftest.cuh"

namespace emu_selftest {
template __global__ void block_reduce_sum<256>(const float*, float*, int);
template __global__ void block_scan<128, true>(const int*, int*);
template __global__ void block_scan<128, false>(const int*, int*);
template __global__ void block_scan_shfl<512>(const float*, float*);
template __global__ void reverse_dynamic<true>(const float*, float*);
template __global__ void transpose<16>(const float*, float*, int, int);
template __global__ void wmma_gemm<__half, false, false>(const __half*, const __half*, float*, int, int, int);
template __global__ void wmma_gemm<__half, true, true>(const __half*, const __half*, float*, int, int, int);
template __global__ void wmma_gemm<__nv_bfloat16, false, false>(const __nv_bfloat16*, const __nv_bfloat16*, float*,
                                                                  int, int, int);
}  // namespace emu_selftest
