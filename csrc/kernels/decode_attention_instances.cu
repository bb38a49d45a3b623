// Instantiates the decode-attention kernels as csrc/cuda/decode_attention.cu
// launches them, without torch, so scripts/ptxas_report.py reports their
// registers, spills and shared memory in seconds.
#include "decode_attention.cuh"

namespace aigc {
namespace attn {
#define AIGC_DECODE_INSTANCES(T, D)                                                          \
  template __global__ void decode_attention_split<T, D, kSplitTile, kSplitThreads>(DecodeParams); \
  template __global__ void decode_attention_merge<T, D>(DecodeParams);
#define AIGC_DECODE_ALL_D(T) \
  AIGC_DECODE_INSTANCES(T, 64) \
  AIGC_DECODE_INSTANCES(T, 80) \
  AIGC_DECODE_INSTANCES(T, 96) \
  AIGC_DECODE_INSTANCES(T, 128) \
  AIGC_DECODE_INSTANCES(T, 256)
AIGC_DECODE_ALL_D(float)
AIGC_DECODE_ALL_D(__half)
AIGC_DECODE_ALL_D(__nv_bfloat16)
}  // namespace attn
}  // namespace aigc
