// Emulation binding of csrc/kernels/decode_attention.cuh: launches the split
// and merge kernels on the CPU with the configuration the CUDA binding uses
// (tests/test_decode_attention_cuda.py compares them with the reference).
#include "emulation/emu_pybind.h"

#include <pybind11/stl.h>

#include <vector>
#include "kernels/decode_attention.cuh"

namespace {

using aigc::attn::DecodeParams;

template <typename T, int kD>
void launch(const DecodeParams& p, int B) {
  using namespace aigc::attn;
  constexpr int kThreads = kSplitThreads, kTile = kSplitTile;
  const size_t smem = SplitSmem<T, kD, kTile, kThreads>::bytes(p.G);
  emu::launch(decode_attention_split<T, kD, kTile, kThreads>, dim3(p.num_splits, p.Hkv, B),
              dim3(kThreads), smem, p);
  if (p.num_splits > 1) emu::launch(decode_attention_merge<T, kD>, dim3(p.H, B), dim3(kD), 0, p);
}

// dtype: 0 float32, 1 float16, 2 bfloat16. Strides in elements.
void decode_attention(int dtype, emu::Ptr<const void> q, emu::Ptr<const void> k,
                      emu::Ptr<const void> v, emu::Ptr<const int> seq_lens, emu::Ptr<void> out,
                      emu::Ptr<float> lse, emu::Ptr<float> ws_acc, emu::Ptr<float> ws_ml,
                      std::vector<int64_t> strides, int B, int H, int Hkv, int D, int chunk_len,
                      int num_splits, float scale) {
  if (!aigc::attn::supported_head_dim(D)) throw pybind11::value_error("unsupported head size");
  DecodeParams p{q,         k,         v,          seq_lens,   out,        lse,
                 ws_acc,    ws_ml,     strides[0], strides[1], strides[2], strides[3],
                 strides[4], strides[5], strides[6], strides[7], H,         Hkv,
                 H / Hkv,   num_splits, chunk_len, scale * 1.4426950408889634f};
  aigc::attn::dispatch_head_dim(D, [&]<int kD>() {
    if (dtype == 0) launch<float, kD>(p, B);
    else if (dtype == 1) launch<__half, kD>(p, B);
    else launch<__nv_bfloat16, kD>(p, B);
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("decode_attention", &decode_attention);
  m.def("plan", [](int Hkv, int Tmax, int num_sms) {
    const auto plan = aigc::attn::plan_decode(Hkv, Tmax, num_sms);
    return pybind11::make_tuple(plan.chunk_len, plan.num_splits);
  });
  emu::def_runtime_helpers(m);
}
