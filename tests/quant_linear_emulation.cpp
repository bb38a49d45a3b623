// Emulation binding of csrc/kernels/quant_linear.cuh: launches the GEMV or
// the GEMM kernel on the CPU with the configuration csrc/cuda/quant_linear.cu
// uses (tests/test_quant_linear_cuda.py compares them with the reference).
#include "emulation/emu_pybind.h"
#include "kernels/quant_linear.cuh"

namespace {

using aigc::quant::LinearParams;

template <int QT, typename T>
void launch(const LinearParams& p, bool gemv) {
  using namespace aigc::quant;
  if (gemv) {
    const auto run = [&]<int kRows>() {
      const dim3 grid((p.N + kGemvWarps - 1) / kGemvWarps, (p.M + kRows - 1) / kRows);
      emu::launch(quant_gemv<QT, T, kRows>, grid, dim3(kGemvWarps * 32), 0, p);
    };
    switch (gemv_rows(p.M)) {
      case 1: run.template operator()<1>(); break;
      case 2: run.template operator()<2>(); break;
      case 4: run.template operator()<4>(); break;
      default: run.template operator()<8>(); break;
    }
  } else {
    const dim3 grid((p.N + kGemmTile - 1) / kGemmTile, (p.M + kGemmTile - 1) / kGemmTile);
    emu::launch(quant_gemm<QT, T>, grid, dim3(kGemmThreads), 0, p);
  }
}

// bf16: x and out are bfloat16 (else float32). path: 0 as the binding picks,
// 1 GEMV (M <= kGemvMaxRows), 2 GEMM.
void quant_linear(bool bf16, emu::Ptr<const void> x, emu::Ptr<const uint8_t> w,
                  emu::Ptr<const float> bias, emu::Ptr<void> out, int64_t ldx,
                  int64_t row_bytes, int qtype, int M, int N, int K, int path) {
  const LinearParams p{x, w, bias, out, ldx, row_bytes, M, N, K};
  const bool gemv = path == 1 || (path == 0 && M <= aigc::quant::kGemvMaxRows);
  if (gemv && M > aigc::quant::kGemvMaxRows) throw pybind11::value_error("GEMV takes M <= 8");
  const bool ok = aigc::quant::dispatch_qtype(qtype, [&](auto qt) {
    if (bf16) launch<decltype(qt)::value, __nv_bfloat16>(p, gemv);
    else launch<decltype(qt)::value, float>(p, gemv);
  });
  if (!ok) throw pybind11::value_error("unsupported type");
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("quant_linear", &quant_linear);
  m.def("gemv_max_rows", [] { return aigc::quant::kGemvMaxRows; });
  emu::def_runtime_helpers(m);
}
