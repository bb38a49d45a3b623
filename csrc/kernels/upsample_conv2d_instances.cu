// The shipped instantiations of the upsample_conv2d kernels, torch-free, so
// scripts/ptxas_report.py reports their registers, spills and shared memory
// in seconds (the binding csrc/cuda/upsample_conv2d.cu instantiates the same).
#include "upsample_conv2d.cuh"

namespace aigc_kernels::upsample {
template __global__ void upsample_conv2d_simt<float>(const Params);
template __global__ void upsample_conv2d_wmma<__half>(const Params);
template __global__ void upsample_conv2d_wmma<__nv_bfloat16>(const Params);
}  // namespace aigc_kernels::upsample
