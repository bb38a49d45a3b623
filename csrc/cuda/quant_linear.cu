// aigc::quant_linear on CUDA: checks, then the GEMV kernel (M <= 8) or the
// tiled GEMM kernel (csrc/kernels/quant_linear.cuh). Float32 activations on
// both: `exact` changes nothing here.
#include <ATen/ATen.h>
// Only c10's CUDA headers: ATen/cuda/CUDAContext.h wants cuSPARSE/cuBLAS headers
// that a minimal toolkit lacks.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "kernels/quant_linear.cuh"

namespace aigc {
// csrc/cpu/quant_linear.cpp: dtype, shape, device and layout checks.
void check_quant_linear(const at::Tensor& x, const at::Tensor& weight, int64_t qtype, int64_t K,
                        const std::optional<at::Tensor>& bias);
}  // namespace aigc

namespace {

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <int QT, typename T>
void launch(const aigc::quant::LinearParams& p, cudaStream_t stream) {
  using namespace aigc::quant;
  if (p.M <= kGemvMaxRows) {
    const auto run = [&]<int kRows>() {
      const dim3 grid((p.N + kGemvWarps - 1) / kGemvWarps, (p.M + kRows - 1) / kRows);
      quant_gemv<QT, T, kRows><<<grid, kGemvWarps * 32, 0, stream>>>(p);
    };
    switch (gemv_rows(p.M)) {
      case 1: run.template operator()<1>(); break;
      case 2: run.template operator()<2>(); break;
      case 4: run.template operator()<4>(); break;
      default: run.template operator()<8>(); break;
    }
  } else {
    const dim3 grid((p.N + kGemmTile - 1) / kGemmTile, (p.M + kGemmTile - 1) / kGemmTile);
    quant_gemm<QT, T><<<grid, kGemmThreads, 0, stream>>>(p);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor quant_linear_cuda(const at::Tensor& x_in, const at::Tensor& weight_in, int64_t qtype,
                             int64_t K, const std::optional<at::Tensor>& bias, bool exact) {
  (void)exact;
  aigc::check_quant_linear(x_in, weight_in, qtype, K, bias);
  TORCH_CHECK_VALUE(aigc::quant::tiled_base(static_cast<int>(qtype)) == 0, "aigc.quant_linear: ",
                    aigc::quant::name_of(static_cast<int>(qtype)),
                    " is a CPU layout; on CUDA pass the GGUF layout (QuantWeight.untiled())");
  const int64_t M = x_in.size(0), N = weight_in.size(0);
  // The GEMM's grid has ceil(M / 64) rows, at most 65535.
  TORCH_CHECK_VALUE(M <= int64_t{65535} * aigc::quant::kGemmTile && N < (int64_t{1} << 31) &&
                        K < (int64_t{1} << 31),
                    "aigc.quant_linear: shape too large for the CUDA kernels: M = ", M, ", N = ",
                    N, ", K = ", K);
  const c10::cuda::CUDAGuard guard(x_in.device());
  // The kernels read 16-byte vectors: x rows and the weight must start 16-aligned.
  const int64_t elem = x_in.element_size();
  const bool x_ok = aligned16(x_in.data_ptr()) && (x_in.stride(0) * elem) % 16 == 0;
  const at::Tensor x = x_ok ? x_in : x_in.contiguous().clone();
  const at::Tensor weight = aligned16(weight_in.data_ptr()) ? weight_in : weight_in.clone();
  at::Tensor b;
  if (bias.has_value()) b = bias->to(at::kFloat).contiguous();
  at::Tensor out = at::empty({M, N}, x.options());
  if (M == 0 || N == 0) return out;
  const aigc::quant::LinearParams p{x.data_ptr(),
                                    weight.data_ptr<uint8_t>(),
                                    b.defined() ? b.data_ptr<float>() : nullptr,
                                    out.data_ptr(),
                                    x.stride(0),
                                    weight.size(1),
                                    static_cast<int>(M),
                                    static_cast<int>(N),
                                    static_cast<int>(K)};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  aigc::quant::dispatch_qtype(static_cast<int>(qtype), [&](auto qt) {
    if (x.scalar_type() == at::kFloat)
      launch<decltype(qt)::value, float>(p, stream);
    else
      launch<decltype(qt)::value, __nv_bfloat16>(p, stream);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(aigc, CUDA, m) { m.impl("quant_linear", &quant_linear_cuda); }
