// Instantiates the quant_linear kernels as csrc/cuda/quant_linear.cu launches
// them, without torch, so scripts/ptxas_report.py reports their registers,
// spills and shared memory in seconds.
#include "quant_linear.cuh"

namespace aigc {
namespace quant {
#define AIGC_QL_INSTANCES(QT, T)                                  \
  template __global__ void quant_gemv<QT, T, 1>(LinearParams);    \
  template __global__ void quant_gemv<QT, T, 2>(LinearParams);    \
  template __global__ void quant_gemv<QT, T, 4>(LinearParams);    \
  template __global__ void quant_gemv<QT, T, 8>(LinearParams);    \
  template __global__ void quant_gemm<QT, T>(LinearParams);
#define AIGC_QL_TYPES(T)        \
  AIGC_QL_INSTANCES(kQ4_0, T)   \
  AIGC_QL_INSTANCES(kQ4_1, T)   \
  AIGC_QL_INSTANCES(kQ5_0, T)   \
  AIGC_QL_INSTANCES(kQ5_1, T)   \
  AIGC_QL_INSTANCES(kQ8_0, T)   \
  AIGC_QL_INSTANCES(kQ4_K, T)   \
  AIGC_QL_INSTANCES(kQ5_K, T)   \
  AIGC_QL_INSTANCES(kQ6_K, T)
AIGC_QL_TYPES(float)
AIGC_QL_TYPES(__nv_bfloat16)
}  // namespace quant
}  // namespace aigc
