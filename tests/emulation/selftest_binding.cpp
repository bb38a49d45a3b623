// Python binding of the harness self-test kernels (tests/test_emulation_harness.py).
#include "emulation/emu_pybind.h"
#include "kernels/selftest.cuh"

namespace st = emu_selftest;
using emu::Ptr;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  emu::def_runtime_helpers(m);

  m.def("block_reduce_sum", [](Ptr<const float> in, Ptr<float> out, int n, int blocks) {
    emu::launch(st::block_reduce_sum<256>, blocks, 256, 0, in.get(), out.get(), n);
  });
  m.def("block_scan", [](Ptr<const int> in, Ptr<int> out, int blocks, bool sync) {
    if (sync) {
      emu::launch(st::block_scan<128, true>, blocks, 128, 0, in.get(), out.get());
    } else {
      emu::launch(st::block_scan<128, false>, blocks, 128, 0, in.get(), out.get());
    }
  });
  m.def("block_scan_shfl", [](Ptr<const float> in, Ptr<float> out, int blocks) {
    emu::launch(st::block_scan_shfl<512>, blocks, 512, 0, in.get(), out.get());
  });
  m.def("shuffle", [](Ptr<const int> in, Ptr<int> out, int threads, int mode, int arg, int width) {
    emu::launch(st::shuffle, 1, threads, 0, in.get(), out.get(), mode, arg, width);
  });
  m.def("shuffle_wide", [](Ptr<const double> in, Ptr<double> out, Ptr<__half> hout) {
    emu::launch(st::shuffle_wide, 1, 64, 0, in.get(), out.get(), hout.get());
  });
  m.def("votes", [](Ptr<const int> pred, Ptr<unsigned> out, int blocks, int threads) {
    emu::launch(st::votes, blocks, threads, 0, pred.get(), out.get());
  });
  m.def("activemask_after_exit", [](Ptr<unsigned> out, int threads, int n) {
    emu::launch(st::activemask_after_exit, 1, threads, 0, out.get(), n);
  });
  m.def("warp_match_reduce", [](Ptr<const int> in, Ptr<unsigned> out) {
    emu::launch(st::warp_match_reduce, 1, 64, 0, in.get(), out.get());
  });
  m.def("half_warp_groups", [](Ptr<const int> in, Ptr<int> out) {
    emu::launch(st::half_warp_groups, 1, 32, 0, in.get(), out.get());
  });
  m.def("cg_tiles", [](Ptr<const int> in, Ptr<int> out, int threads) {
    emu::launch(st::cg_tiles, 1, threads, 0, in.get(), out.get());
  });
  m.def("barrier_predicates", [](Ptr<const int> pred, Ptr<int> out, int blocks, int threads) {
    emu::launch(st::barrier_predicates, blocks, threads, 0, pred.get(), out.get());
  });
  m.def("atomics", [](Ptr<const int> values, int n, Ptr<int> histogram, int bins, Ptr<int> ints, Ptr<unsigned> uints,
                      Ptr<float> fsum, Ptr<double> dsum, Ptr<float> fmax, int blocks, int threads) {
    emu::launch(st::atomics, blocks, threads, 0, values.get(), n, histogram.get(), bins, ints.get(), uints.get(),
                fsum.get(), dsum.get(), fmax.get());
  });
  m.def("reverse_dynamic", [](Ptr<const float> in, Ptr<float> out, int blocks, int threads, bool sync) {
    const size_t smem = size_t(threads) * sizeof(float);
    if (sync) {
      emu::launch(st::reverse_dynamic<true>, blocks, threads, smem, in.get(), out.get());
    } else {
      emu::launch(st::reverse_dynamic<false>, blocks, threads, smem, in.get(), out.get());
    }
  });
  m.def("dynamic_two_arrays", [](Ptr<const float> in, Ptr<float> out, int n) {
    emu::launch(st::dynamic_two_arrays, 1, n, size_t(n) * (sizeof(float) + sizeof(int)), in.get(), out.get(), n);
  });
  m.def("transpose", [](Ptr<const float> in, Ptr<float> out, int rows, int cols) {
    constexpr int kTile = 16;
    const dim3 grid((cols + kTile - 1) / kTile, (rows + kTile - 1) / kTile);
    emu::launch(st::transpose<kTile>, grid, dim3(kTile, kTile), 0, in.get(), out.get(), rows, cols);
  });
  m.def("geometry", [](Ptr<int> out, std::tuple<unsigned, unsigned, unsigned> g,
                       std::tuple<unsigned, unsigned, unsigned> b) {
    const dim3 grid(std::get<0>(g), std::get<1>(g), std::get<2>(g));
    const dim3 block(std::get<0>(b), std::get<1>(b), std::get<2>(b));
    emu::launch(st::geometry, grid, block, 0, out.get());
  });
  m.def("convert16", [](Ptr<const float> in, Ptr<__half> h, Ptr<__nv_bfloat16> b, Ptr<float> hb, Ptr<float> bb,
                        int n) {
    emu::launch(st::convert16, (n + 255) / 256, 256, 0, in.get(), h.get(), b.get(), hb.get(), bb.get(), n);
  });
  m.def("widen16", [](Ptr<const __half> h, Ptr<const __nv_bfloat16> b, Ptr<float> hf, Ptr<float> bf, int n) {
    emu::launch(st::widen16, (n + 255) / 256, 256, 0, h.get(), b.get(), hf.get(), bf.get(), n);
  });
  m.def("half_math", [](Ptr<const __half> a, Ptr<const __half> b, Ptr<__half> fma_out, Ptr<__half> add2_out, int n) {
    const int vectors = n / 8;
    emu::launch(st::half_math, (vectors + 63) / 64, 64, 0, a.get(), b.get(), fma_out.get(), add2_out.get(), n);
  });
  m.def("scale_float4", [](Ptr<const float4> x, Ptr<float4> y, int n4) {
    emu::launch(st::scale_float4, (n4 + 63) / 64, 64, 0, x.get(), y.get(), n4);
  });
  m.def("math_functions", [](Ptr<const float> x, Ptr<float> out, int n) {
    emu::launch(st::math_functions, (n + 127) / 128, 128, 0, x.get(), out.get(), n);
  });
  m.def("wmma_gemm", [](Ptr<const void> A, Ptr<const void> B, Ptr<float> C, int M, int N, int K, bool bf16,
                        bool b_col_major, bool c_col_major) {
    const int warps = (M / 16) * (N / 16);
    const int threads = 128, blocks = (warps * 32 + threads - 1) / threads;
    auto run = [&](auto type_tag) {
      using T = decltype(type_tag);
      const T* a = static_cast<const T*>(A.get());
      const T* b = static_cast<const T*>(B.get());
      if (b_col_major && c_col_major) emu::launch(st::wmma_gemm<T, true, true>, blocks, threads, 0, a, b, C.get(), M, N, K);
      if (b_col_major && !c_col_major) emu::launch(st::wmma_gemm<T, true, false>, blocks, threads, 0, a, b, C.get(), M, N, K);
      if (!b_col_major && c_col_major) emu::launch(st::wmma_gemm<T, false, true>, blocks, threads, 0, a, b, C.get(), M, N, K);
      if (!b_col_major && !c_col_major) emu::launch(st::wmma_gemm<T, false, false>, blocks, threads, 0, a, b, C.get(), M, N, K);
    };
    if (bf16) {
      run(__nv_bfloat16{});
    } else {
      run(__half{});
    }
  });
  m.def("wmma_shapes", [](Ptr<const __half> a, Ptr<const __half> b, Ptr<const __half> c, Ptr<__half> d,
                          Ptr<const float> ta, Ptr<const float> tb, Ptr<float> td) {
    emu::launch(st::wmma_shapes, 1, 32, 0, a.get(), b.get(), c.get(), d.get(), ta.get(), tb.get(), td.get());
  });
  m.def("misuse", [](Ptr<float> out, int mode, int threads) { emu::launch(st::misuse, 1, threads, 0, out.get(), mode); });
  m.def("launch_config", [](unsigned gx, unsigned bx, unsigned by, unsigned bz, size_t smem, Ptr<float> out) {
    emu::launch(st::reverse_dynamic<true>, dim3(gx), dim3(bx, by, bz), smem, static_cast<const float*>(out.get()),
                out.get());
  });
}
