// The ideal loop of grouped-query decode attention on the CPU: the rate
// aigc.decode_attention could reach if nothing cost time but streaming the
// cache and the multiply-adds no kernel can skip.
//
// It walks K and V as the kernel's GQA path does: one KV head's rows per work
// item, items handed out from a shared counter; 32-row tiles; each tile's K and
// V rows read once, in address order (the demand stream the hardware
// prefetcher follows); the rows of the tile two ahead requested into L2
// (prefetcht1), spread evenly over the tile's arithmetic. The arithmetic is the
// floor for G query heads, scores and PV: 2 * G * D multiply-adds per cached
// row, done on registers. None of the kernel's passes from L1, horizontal sums
// or softmax.
//
// Returns the sum of every K and V element it read (tests/test_gqa_bound.py
// checks it against torch, so the loop provably reads each element once) and
// a sink that keeps the multiply-adds live.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#ifndef __AVX512F__
#error "the ideal GQA loop is written for AVX-512 (build with -march=native on such a CPU)"
#endif
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <vector>

namespace {

constexpr int64_t kTile = 32;          // rows per tile, as in the kernel
constexpr int64_t kRequestTiles = 2;   // how far ahead rows are requested, as in the kernel
constexpr int64_t kLineBytes = 64;

inline void request_l2(const char* p) { asm volatile("prefetcht1 %0" : : "m"(*p)); }

// Requests `lines` cache lines of K then V (rows from k and v, `row_lines`
// lines each), `per_step` at a time in Bresenham fashion over `steps` steps.
class SpreadRequests {
 public:
  SpreadRequests(const char* k, const char* v, int64_t rows, int64_t row_lines, int64_t steps)
      : k_(k), v_(v), half_(rows * row_lines), steps_(std::max<int64_t>(steps, 1)),
        credit_(steps_ - 1) {}
  void step() {
    credit_ += 2 * half_;
    for (; credit_ >= steps_ && done_ < 2 * half_; ++done_) {
      credit_ -= steps_;
      request_l2(done_ < half_ ? k_ + done_ * kLineBytes : v_ + (done_ - half_) * kLineBytes);
    }
  }

 private:
  const char *k_, *v_;
  int64_t half_, steps_, credit_, done_ = 0;
};

struct Totals {
  double read = 0.0, sink = 0.0;
};

// One KV head: rows [0, T) of D floats at k and v.
Totals stream_head(const float* k, const float* v, int64_t T, int64_t D, int64_t G) {
  const int64_t row_lines = D * 4 / kLineBytes;
  const __m512 decay = _mm512_set1_ps(0.999f);
  __m512 read_k = _mm512_setzero_ps(), read_v = _mm512_setzero_ps();
  __m512 a0 = read_k, a1 = read_k, a2 = read_k, a3 = read_k;
  __m512 a4 = read_k, a5 = read_k, a6 = read_k, a7 = read_k;
  for (int64_t t0 = 0; t0 < T; t0 += kTile) {
    const int64_t n = std::min(kTile, T - t0);
    const float* kt = k + t0 * D;
    const float* vt = v + t0 * D;
    for (int64_t i = 0; i < n * D; i += 16) {
      read_k = _mm512_add_ps(read_k, _mm512_loadu_ps(kt + i));
      read_v = _mm512_add_ps(read_v, _mm512_loadu_ps(vt + i));
    }
    const int64_t ahead = t0 + kRequestTiles * kTile;
    const int64_t ahead_rows = std::clamp<int64_t>(T - ahead, 0, kTile);
    // 2 * G * D multiply-adds per row, 16 per zmm FMA, 8 FMAs a step.
    const int64_t steps = (2 * G * D * n / 16 + 7) / 8;
    SpreadRequests requests(reinterpret_cast<const char*>(k + ahead * D),
                            reinterpret_cast<const char*>(v + ahead * D), ahead_rows, row_lines,
                            steps);
    for (int64_t s = 0; s < steps; ++s) {
      a0 = _mm512_fmadd_ps(a0, decay, read_k);
      a1 = _mm512_fmadd_ps(a1, decay, read_k);
      a2 = _mm512_fmadd_ps(a2, decay, read_k);
      a3 = _mm512_fmadd_ps(a3, decay, read_k);
      a4 = _mm512_fmadd_ps(a4, decay, read_v);
      a5 = _mm512_fmadd_ps(a5, decay, read_v);
      a6 = _mm512_fmadd_ps(a6, decay, read_v);
      a7 = _mm512_fmadd_ps(a7, decay, read_v);
      if (ahead_rows > 0) requests.step();
    }
  }
  alignas(64) float lanes[16];
  Totals totals;
  _mm512_store_ps(lanes, _mm512_add_ps(read_k, read_v));
  for (float x : lanes) totals.read += x;
  const __m512 fmas = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                    _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  _mm512_store_ps(lanes, fmas);
  for (float x : lanes) totals.sink += x;
  return totals;
}

// k, v: [B, Hkv, T, D] float32, contiguous, D a multiple of 16; G query heads
// per KV head (0: stream only). Returns (sum of k and v, sink).
std::tuple<double, double> ideal_gqa_loop(const at::Tensor& k, const at::Tensor& v, int64_t G) {
  TORCH_CHECK(k.dtype() == at::kFloat && v.dtype() == at::kFloat, "k and v must be float32");
  TORCH_CHECK(k.dim() == 4 && v.sizes() == k.sizes(), "k and v must share a [B, Hkv, T, D] shape");
  TORCH_CHECK(k.is_contiguous() && v.is_contiguous(), "k and v must be contiguous");
  TORCH_CHECK(k.size(3) % 16 == 0, "D must be a multiple of 16, got ", k.size(3));
  TORCH_CHECK(G >= 0, "G must be >= 0, got ", G);
  const int64_t heads = k.size(0) * k.size(1), T = k.size(2), D = k.size(3);
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  const int threads = at::get_num_threads();
  std::vector<Totals> per_thread(threads);
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t thread, int64_t) {
    for (int64_t h = next.fetch_add(1); h < heads; h = next.fetch_add(1)) {
      const Totals t = stream_head(kp + h * T * D, vp + h * T * D, T, D, G);
      per_thread[thread].read += t.read;
      per_thread[thread].sink += t.sink;
    }
  });
  Totals all;
  for (const Totals& t : per_thread) {
    all.read += t.read;
    all.sink += t.sink;
  }
  return {all.read, all.sink};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("ideal_gqa_loop", &ideal_gqa_loop, "stream K/V tile by tile with the GQA FMA floor");
}
