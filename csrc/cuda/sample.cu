// aigc::sample on CUDA: checks, one block per row (csrc/kernels/sampling.cuh),
// then one synchronisation to turn bad rows' statuses into errors.
#include <ATen/ATen.h>
// Only c10's CUDA headers: ATen/cuda/CUDAContext.h wants cuSPARSE/cuBLAS headers
// that a minimal toolkit lacks.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "kernels/sampling.cuh"

namespace aigc {
// csrc/cpu/sample.cpp: dtype, shape, device and layout checks.
void check_sample_inputs(const at::Tensor& logits, const at::Tensor& temperature,
                         const at::Tensor& top_k, const at::Tensor& top_p,
                         const at::Tensor& min_p, const at::Tensor& seed,
                         const at::Tensor& offset, const std::optional<at::Tensor>& prev_tokens,
                         const std::optional<at::Tensor>& repetition_penalty,
                         const std::optional<at::Tensor>& row_ids);
}  // namespace aigc

namespace {

// The error of the first bad row, parameter errors before data errors (the
// order the CPU kernel reports them in).
void raise_for_status(const at::Tensor& tokens_cpu, const std::vector<std::pair<const char*, at::Tensor>>& params) {
  const int64_t* t = tokens_cpu.data_ptr<int64_t>();
  const int64_t B = tokens_cpu.size(0);
  for (bool data_errors : {false, true}) {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t s = t[b];
      if (s >= 0 || (s >= aigc::kSampleNoFinite) != data_errors) continue;
      if (data_errors)
        TORCH_CHECK_VALUE(false, "aigc.sample: logits row ", b, ": ", aigc::sample_status_message(s));
      const char* name = s == aigc::kSampleBadTemperature ? "temperature"
                         : s == aigc::kSampleBadTopK      ? "top_k"
                         : s == aigc::kSampleBadTopP      ? "top_p"
                         : s == aigc::kSampleBadMinP      ? "min_p"
                         : s == aigc::kSampleBadPenalty   ? "repetition_penalty"
                                                          : "prev_tokens";
      for (const auto& [param, tensor] : params)
        if (std::string(param) == name)
          TORCH_CHECK_VALUE(false, "aigc.sample: ", name, "[", b, "] = ", tensor[b].item(), ": ",
                            aigc::sample_status_message(s));
      TORCH_CHECK_VALUE(false, "aigc.sample: row ", b, ": ", aigc::sample_status_message(s));
    }
  }
}

at::Tensor sample_cuda(const at::Tensor& logits, const at::Tensor& temperature,
                       const at::Tensor& top_k, const at::Tensor& top_p, const at::Tensor& min_p,
                       const at::Tensor& seed, const at::Tensor& offset,
                       const std::optional<at::Tensor>& prev_tokens,
                       const std::optional<at::Tensor>& repetition_penalty,
                       const std::optional<at::Tensor>& row_ids) {
  aigc::check_sample_inputs(logits, temperature, top_k, top_p, min_p, seed, offset, prev_tokens,
                            repetition_penalty, row_ids);
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t B = logits.size(0), V = logits.size(1);
  at::Tensor tokens = at::empty({B}, logits.options().dtype(at::kLong));
  if (B == 0) return tokens;
  TORCH_CHECK_VALUE(B < (int64_t{1} << 31), "aigc.sample: too many rows for the CUDA kernel");
  at::Tensor work = at::empty({B, V}, logits.options().dtype(at::kFloat));
  const bool penalized = prev_tokens.has_value();
  const aigc::sampling::SampleParams p{
      logits.data_ptr(),
      logits.stride(0),
      static_cast<int>(V),
      temperature.data_ptr<float>(),
      top_k.data_ptr<int64_t>(),
      top_p.data_ptr<float>(),
      min_p.data_ptr<float>(),
      seed.data_ptr<int64_t>(),
      offset.data_ptr<int64_t>(),
      penalized ? prev_tokens->data_ptr<int64_t>() : nullptr,
      penalized ? static_cast<int>(prev_tokens->size(1)) : 0,
      penalized ? repetition_penalty->data_ptr<float>() : nullptr,
      work.data_ptr<float>(),
      tokens.data_ptr<int64_t>(),
      row_ids.has_value() ? row_ids->data_ptr<int64_t>() : nullptr};
  using aigc::sampling::kSampleThreads;
  using aigc::sampling::sample_kernel;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  switch (logits.scalar_type()) {
    case at::kFloat: sample_kernel<float, kSampleThreads><<<B, kSampleThreads, 0, stream>>>(p); break;
    case at::kHalf: sample_kernel<__half, kSampleThreads><<<B, kSampleThreads, 0, stream>>>(p); break;
    default:
      sample_kernel<__nv_bfloat16, kSampleThreads><<<B, kSampleThreads, 0, stream>>>(p);
      break;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor tokens_cpu = tokens.cpu();  // the synchronisation
  raise_for_status(tokens_cpu, {{"temperature", temperature}, {"top_k", top_k}, {"top_p", top_p},
                                {"min_p", min_p},
                                {"repetition_penalty",
                                 penalized ? *repetition_penalty : temperature}});
  return tokens;
}

}  // namespace

TORCH_LIBRARY_IMPL(aigc, CUDA, m) { m.impl("sample", &sample_cuda); }
