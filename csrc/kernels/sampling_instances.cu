// Instantiates the sampling kernel as csrc/cuda/sample.cu launches it, without
// torch, so scripts/ptxas_report.py reports its resources in seconds.
#include "sampling.cuh"

namespace aigc {
namespace sampling {
template __global__ void sample_kernel<float, kSampleThreads>(SampleParams);
template __global__ void sample_kernel<__half, kSampleThreads>(SampleParams);
template __global__ void sample_kernel<__nv_bfloat16, kSampleThreads>(SampleParams);
}  // namespace sampling
}  // namespace aigc
