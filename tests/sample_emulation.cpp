// Emulation binding of csrc/kernels/sampling.cuh: launches sample_kernel on
// the CPU as csrc/cuda/sample.cu does (tests/test_sample_cuda.py compares the
// tokens with the CPU kernel and the reference, which must be identical).
#include "emulation/emu_pybind.h"
#include "kernels/sampling.cuh"

namespace {

using aigc::sampling::SampleParams;

// dtype: 0 float32, 1 float16, 2 bfloat16.
void sample(int dtype, emu::Ptr<const void> logits, int64_t row_stride, int B, int V,
            emu::Ptr<const float> temperature, emu::Ptr<const int64_t> top_k,
            emu::Ptr<const float> top_p, emu::Ptr<const float> min_p,
            emu::Ptr<const int64_t> seed, emu::Ptr<const int64_t> offset,
            emu::Ptr<const int64_t> prev, int n_prev, emu::Ptr<const float> penalty,
            emu::Ptr<float> work, emu::Ptr<int64_t> tokens, emu::Ptr<const int64_t> row_ids) {
  using namespace aigc::sampling;
  const SampleParams p{logits, row_stride, V,      temperature, top_k,  top_p,  min_p, seed,
                       offset, prev,       n_prev, penalty,     work,   tokens, row_ids};
  const dim3 grid(B), block(kSampleThreads);
  if (dtype == 0) emu::launch(sample_kernel<float, kSampleThreads>, grid, block, 0, p);
  else if (dtype == 1) emu::launch(sample_kernel<__half, kSampleThreads>, grid, block, 0, p);
  else emu::launch(sample_kernel<__nv_bfloat16, kSampleThreads>, grid, block, 0, p);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("sample", &sample);
  emu::def_runtime_helpers(m);
}
