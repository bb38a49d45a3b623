// aigc::decode_attention on CUDA: checks, then the split-KV kernel and, when a
// sequence spans several chunks, the merge kernel (csrc/kernels/decode_attention.cuh).
#include <ATen/ATen.h>
// Only c10's CUDA headers: ATen/cuda/CUDAContext.h wants cuSPARSE/cuBLAS headers
// that a minimal toolkit lacks.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "kernels/decode_attention.cuh"

namespace aigc {
// csrc/cpu/decode_attention.cpp: dtype, shape, device and layout checks.
void check_decode_attention(const at::Tensor& q, const at::Tensor& k_cache,
                            const at::Tensor& v_cache, const at::Tensor& seq_lens, double scale);
}  // namespace aigc

namespace {

// 128-bit loads need 16-byte aligned rows: the data pointer and every stride
// but the last a multiple of 16 bytes. Anything else is copied.
at::Tensor aligned_rows(const at::Tensor& t) {
  const int64_t elem = t.element_size();
  bool ok = reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) ok = ok && (t.stride(d) * elem) % 16 == 0;
  return ok ? t : t.contiguous();
}

template <typename T, int kD>
void launch(const aigc::attn::DecodeParams& p, int B, cudaStream_t stream) {
  using namespace aigc::attn;
  constexpr int kThreads = kSplitThreads, kTile = kSplitTile;
  auto* split = decode_attention_split<T, kD, kTile, kThreads>;
  const size_t smem = SplitSmem<T, kD, kTile, kThreads>::bytes(p.G);
  if (smem > 48 * 1024) {
    int optin = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                          c10::cuda::current_device()));
    TORCH_CHECK_VALUE(smem <= static_cast<size_t>(optin), "aigc.decode_attention: ", p.G,
                      " query heads per KV head need ", smem,
                      " bytes of shared memory, more than this GPU's ", optin);
    C10_CUDA_CHECK(cudaFuncSetAttribute(split, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
  }
  split<<<dim3(p.num_splits, p.Hkv, B), kThreads, smem, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (p.num_splits > 1) {
    decode_attention_merge<T, kD><<<dim3(p.H, B), kD, 0, stream>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

std::tuple<at::Tensor, at::Tensor> decode_attention_lse_cuda(const at::Tensor& q_in,
                                                             const at::Tensor& k_in,
                                                             const at::Tensor& v_in,
                                                             const at::Tensor& seq_lens,
                                                             double scale) {
  aigc::check_decode_attention(q_in, k_in, v_in, seq_lens, scale);
  const int64_t B = q_in.size(0), H = q_in.size(1), D = q_in.size(2);
  const int64_t Hkv = k_in.size(1), Tmax = k_in.size(2);
  TORCH_CHECK_VALUE(aigc::attn::supported_head_dim(static_cast<int>(D)),
                    "aigc.decode_attention: on CUDA the head size D must be 64, 80, 96, 128 or "
                    "256, got ",
                    D);
  TORCH_CHECK_VALUE(Tmax < (int64_t{1} << 31) && B < 65536 && Hkv < 65536,
                    "aigc.decode_attention: shape too large for the CUDA kernel");
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor lens = seq_lens.to(at::kInt).contiguous();
  // One synchronisation: out-of-range lengths would read outside the cache.
  if (B > 0) {
    const auto range = at::aminmax(lens);
    const int64_t lo = std::get<0>(range).item<int64_t>(), hi = std::get<1>(range).item<int64_t>();
    TORCH_CHECK_VALUE(lo >= 0 && hi <= Tmax, "aigc.decode_attention: seq_lens must be in [0, Tmax = ",
                      Tmax, "], got values in [", lo, ", ", hi, "]");
  }
  const at::Tensor q = aligned_rows(q_in), k = aligned_rows(k_in), v = aligned_rows(v_in);
  at::Tensor out = at::empty({B, H, D}, q.options());
  at::Tensor lse = at::empty({B, H}, q.options().dtype(at::kFloat));
  if (B == 0 || H == 0) return {out, lse};

  int num_sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount,
                                        q.device().index()));
  const auto plan =
      aigc::attn::plan_decode(static_cast<int>(Hkv), static_cast<int>(Tmax), num_sms);
  at::Tensor ws_acc, ws_ml;
  if (plan.num_splits > 1) {
    ws_acc = at::empty({B, H, plan.num_splits, D}, q.options().dtype(at::kFloat));
    ws_ml = at::empty({B, H, plan.num_splits, 2}, q.options().dtype(at::kFloat));
  }
  const aigc::attn::DecodeParams p{
      q.data_ptr(),
      k.data_ptr(),
      v.data_ptr(),
      lens.data_ptr<int>(),
      out.data_ptr(),
      lse.data_ptr<float>(),
      plan.num_splits > 1 ? ws_acc.data_ptr<float>() : nullptr,
      plan.num_splits > 1 ? ws_ml.data_ptr<float>() : nullptr,
      q.stride(0),
      q.stride(1),
      k.stride(0),
      k.stride(1),
      k.stride(2),
      v.stride(0),
      v.stride(1),
      v.stride(2),
      static_cast<int>(H),
      static_cast<int>(Hkv),
      static_cast<int>(H / Hkv),
      plan.num_splits,
      plan.chunk_len,
      static_cast<float>(scale * 1.4426950408889634)};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  aigc::attn::dispatch_head_dim(static_cast<int>(D), [&]<int kD>() {
    switch (q.scalar_type()) {
      case at::kFloat: launch<float, kD>(p, static_cast<int>(B), stream); break;
      case at::kHalf: launch<__half, kD>(p, static_cast<int>(B), stream); break;
      default: launch<__nv_bfloat16, kD>(p, static_cast<int>(B), stream); break;
    }
  });
  return {out, lse};
}

at::Tensor decode_attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& seq_lens, double scale) {
  return std::get<0>(decode_attention_lse_cuda(q, k, v, seq_lens, scale));
}

}  // namespace

TORCH_LIBRARY_IMPL(aigc, CUDA, m) {
  m.impl("decode_attention", &decode_attention_cuda);
  m.impl("decode_attention_lse", &decode_attention_lse_cuda);
}
