// Engine 2 of aigc::upsample_conv2d on the CPU, for a handful of output
// channels (Cout <= half a vector, e.g. a 64->3 RGB layer or a mono audio
// layer): SIMD lanes run over consecutive output pixels of a phase. The image
// is copied once into zero-padded planes so every tap is a constant shift of
// the flattened plane, and a channel weight is a broadcast: full lanes even
// with 3 output channels. bf16 and fp16 inputs are converted to fp32 while
// copying; float64 accumulates in double.
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "cpu/upsample_conv2d_engines.h"

#include <algorithm>
#include <climits>
#include <vector>

namespace aigc::upsample {
namespace {

// Weight (ci, co, ky, kx) of a ConvTranspose weight (Cin, Cout, kH, kW), as acc_t.
template <typename scalar_t, typename acc_t>
inline acc_t weight_at(const scalar_t* w, const Strides& ws, int64_t ci, int64_t co, int64_t ky,
                       int64_t kx) {
  return static_cast<acc_t>(w[ci * ws.n + co * ws.c + ky * ws.h + kx * ws.w]);
}

// The padded plane covers input rows [iy_lo, iy_hi] and columns [ix_lo, ix_hi]
// (zeros outside the image), so every tap of every phase reads inside it.
struct PaddedPlane {
  int64_t iy_lo, ix_lo, hp, wp, size;
};

PaddedPlane padded_plane(const Geometry& g, const std::vector<Phase>& phases) {
  int64_t iy_lo = 0, iy_hi = g.H - 1, ix_lo = 0, ix_hi = g.W - 1;
  for (const Phase& p : phases) {
    int64_t jy_max = 0, jx_max = 0;
    for (const auto& t : p.taps) {
      jy_max = std::max(jy_max, t[0]);
      jx_max = std::max(jx_max, t[1]);
    }
    iy_lo = std::min(iy_lo, p.t0 - jy_max);
    ix_lo = std::min(ix_lo, p.u0 - jx_max);
    iy_hi = std::max(iy_hi, p.t1);
    ix_hi = std::max(ix_hi, p.u1);
  }
  const int64_t hp = iy_hi - iy_lo + 1, wp = ix_hi - ix_lo + 1;
  return {iy_lo, ix_lo, hp, wp, hp * wp};
}

// One input channel's taps for one accumulator set (see pixel_lanes_microkernel).
template <typename acc_t, int NC, int MV>
inline void pixel_lanes_channel(const acc_t* src0, const int64_t* offsets, int64_t ntaps,
                                const acc_t* w, Vec<acc_t> (&acc)[NC][MV]) {
  constexpr int L = kLanes<acc_t>;
  for (int64_t tap = 0; tap < ntaps; ++tap, w += NC) {
    const acc_t* src = src0 + offsets[tap];
    Vec<acc_t> xv[MV];
#pragma GCC unroll 8
    for (int v = 0; v < MV; ++v) xv[v] = loadu(src + v * L);
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) {
      const Vec<acc_t> wb = splat(w[c]);
#pragma GCC unroll 8
      for (int v = 0; v < MV; ++v) acc[c][v] = fmadd(xv[v], wb, acc[c][v]);
    }
  }
}

// out[c][v*L + lane] = sum_{ci, tap} w[ci][tap][c] * src0[ci * channel_stride +
// offsets[tap] + v*L + lane]: MV*L consecutive output pixels of one phase row.
// With few accumulators (NC*MV <= 6) even and odd input channels go to two
// sets, so enough independent FMA chains hide the FMA latency; the register
// budget (SETS*NC*MV accumulators + MV inputs + 1 weight <= kVectorRegisters) leaves
// the compiler no reason to spill.
template <typename acc_t, int NC, int MV>
inline void pixel_lanes_microkernel(const acc_t* src0, int64_t channel_stride, int64_t cin,
                                    const int64_t* offsets, int64_t ntaps, const acc_t* w,
                                    Vec<acc_t> (&out)[NC][MV]) {
  constexpr int SETS = NC * MV <= 6 ? 2 : 1;
  static_assert(SETS * NC * MV + MV + 1 <= kVectorRegisters, "register budget");
  Vec<acc_t> acc[SETS][NC][MV];
#pragma GCC unroll 2
  for (int s = 0; s < SETS; ++s)
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c)
#pragma GCC unroll 8
      for (int v = 0; v < MV; ++v) acc[s][c][v] = Vec<acc_t>{};
  int64_t ci = 0;
  for (; ci + SETS <= cin; ci += SETS) {
#pragma GCC unroll 2
    for (int s = 0; s < SETS; ++s)
      pixel_lanes_channel<acc_t, NC, MV>(src0 + (ci + s) * channel_stride, offsets, ntaps,
                                         w + (ci + s) * ntaps * NC, acc[s]);
  }
  for (; ci < cin; ++ci)
    pixel_lanes_channel<acc_t, NC, MV>(src0 + ci * channel_stride, offsets, ntaps,
                                       w + ci * ntaps * NC, acc[0]);
#pragma GCC unroll 8
  for (int c = 0; c < NC; ++c)
#pragma GCC unroll 8
    for (int v = 0; v < MV; ++v) {
      out[c][v] = acc[0][c][v];
      if constexpr (SETS == 2) out[c][v] += acc[SETS - 1][c][v];
    }
}

template <typename scalar_t, typename acc_t, int NC, int MV>
void pixel_lanes(const Geometry& g, const std::vector<Phase>& phases, const at::Tensor& x,
                     const at::Tensor& weight, const std::vector<acc_t>& eff_scale,
                     const std::vector<acc_t>& eff_shift, const at::Tensor& out) {
  constexpr int L = kLanes<acc_t>;
  constexpr int BLOCK = MV * L;  // pixels per register tile
  const int64_t cin = g.Cin;
  const PaddedPlane pl = padded_plane(g, phases);
  // The padded image is stored [row][channel][column]: a tile's inputs for
  // successive channels are wp apart, one short stream per tap row, so they
  // stay in L1 across the phases that share the input rows.
  const int64_t row_stride = cin * pl.wp;
  const int64_t chunks = (g.Cout + NC - 1) / NC;

  // Weights per phase as [chunk][ci][tap][NC], and each tap's shift.
  std::vector<int64_t> wofs(phases.size() + 1, 0), tofs(phases.size() + 1, 0);
  for (size_t p = 0; p < phases.size(); ++p) {
    wofs[p + 1] = wofs[p] + chunks * cin * static_cast<int64_t>(phases[p].taps.size()) * NC;
    tofs[p + 1] = tofs[p] + static_cast<int64_t>(phases[p].taps.size());
  }
  std::vector<acc_t> wpack(wofs.back());
  std::vector<int64_t> offsets(std::max<int64_t>(tofs.back(), 1));
  {
    const scalar_t* w = weight.data_ptr<scalar_t>();
    const Strides ws = strides_of(weight);
    for (size_t p = 0; p < phases.size(); ++p) {
      const Phase& ph = phases[p];
      const int64_t ntaps = static_cast<int64_t>(ph.taps.size());
      acc_t* d = wpack.data() + wofs[p];
      for (int64_t k = 0; k < chunks; ++k)
        for (int64_t ci = 0; ci < cin; ++ci)
          for (int64_t tap = 0; tap < ntaps; ++tap)
            for (int c = 0; c < NC; ++c, ++d) {
              const int64_t co = k * NC + c;
              *d = co < g.Cout ? weight_at<scalar_t, acc_t>(w, ws, ci, co,
                                                            ph.ry + ph.taps[tap][0] * g.sh,
                                                            ph.rx + ph.taps[tap][1] * g.sw)
                               : acc_t(0);
            }
      for (int64_t tap = 0; tap < ntaps; ++tap)
        offsets[tofs[p] + tap] = -(ph.taps[tap][0] * row_stride + ph.taps[tap][1]);
    }
  }

  const scalar_t* xptr = x.data_ptr<scalar_t>();
  const Strides xs = strides_of(x);
  scalar_t* out_ptr = out.data_ptr<scalar_t>();
  const Strides os = strides_of(out);
  const acc_t slope = static_cast<acc_t>(g.negative_slope);
  // Lanes past the end of a row read on into the next one (discarded); past
  // the last row they land in this zero tail.
  const int64_t buffer_size = pl.hp * row_stride + BLOCK;

  // Copies input rows [h_begin, h_end) of image n into the padded buffer.
  // Channel-major order reads an NCHW image sequentially (rows of one channel
  // are contiguous), which the hardware prefetcher follows; row-major order
  // would jump a whole plane per row and stall on every few cache lines.
  auto pack_rows = [&](acc_t* rows, int64_t n, int64_t h_begin, int64_t h_end) {
    for (int64_t ci = 0; ci < cin; ++ci)
      for (int64_t h = h_begin; h < h_end; ++h) {
        const scalar_t* s = xptr + n * xs.n + ci * xs.c + h * xs.h;
        acc_t* d = rows + (h - pl.iy_lo) * row_stride + ci * pl.wp - pl.ix_lo;
        if (xs.w == 1) {  // a plain loop, vectorised inline (rows are short for memcpy)
          for (int64_t w = 0; w < g.W; ++w) d[w] = static_cast<acc_t>(s[w]);
          continue;
        }
        for (int64_t w = 0; w < g.W; ++w) d[w] = static_cast<acc_t>(s[w * xs.w]);
      }
  };

  // Phases sharing a row residue ry share their rows t (and input rows), so
  // the work of an image is a list of (ry, t) rows, each done for every phase
  // of that residue while its inputs are in L1.
  struct RowGroup {
    size_t first, last;  // phases [first, last) have this ry
    int64_t t0, t1;
  };
  std::vector<RowGroup> row_groups;
  for (size_t p = 0; p < phases.size(); ++p) {
    if (row_groups.empty() || phases[row_groups.back().first].ry != phases[p].ry)
      row_groups.push_back({p, p + 1, phases[p].t0, phases[p].t1});
    else
      row_groups.back().last = p + 1;
  }
  std::vector<int64_t> first_row(row_groups.size() + 1, 0);
  for (size_t r = 0; r < row_groups.size(); ++r)
    first_row[r + 1] = first_row[r] + row_groups[r].t1 - row_groups[r].t0 + 1;

  // Output rows [row_begin, row_end) of the (ry, t) list, for every phase.
  auto compute_rows = [&](const acc_t* rows, int64_t n, int64_t row_begin, int64_t row_end) {
    alignas(32) acc_t ybuf[NC][BLOCK];
    for (size_t r = 0; r < row_groups.size(); ++r) {
      const RowGroup& rg = row_groups[r];
      for (int64_t row = std::max(row_begin, first_row[r]);
           row < std::min(row_end, first_row[r + 1]); ++row) {
        const int64_t t = rg.t0 + row - first_row[r];
        for (size_t p = rg.first; p < rg.last; ++p) {
          const Phase& ph = phases[p];
          const int64_t ntaps = static_cast<int64_t>(ph.taps.size());
          scalar_t* out_row = out_ptr + n * os.n + (t * g.sh + ph.ry - g.ph) * os.h;
          for (int64_t u0 = ph.u0; u0 <= ph.u1; u0 += BLOCK) {
            const acc_t* src = rows + (t - pl.iy_lo) * row_stride + (u0 - pl.ix_lo);
            const int64_t lanes = std::min<int64_t>(BLOCK, ph.u1 - u0 + 1);
            for (int64_t k = 0; k < chunks; ++k) {
              Vec<acc_t> acc[NC][MV];
              pixel_lanes_microkernel<acc_t, NC, MV>(
                  src, pl.wp, cin, offsets.data() + tofs[p], ntaps,
                  wpack.data() + wofs[p] + k * cin * ntaps * NC, acc);
              const int64_t count = std::min<int64_t>(NC, g.Cout - k * NC);
              for (int c = 0; c < NC; ++c) {
                const Vec<acc_t> sc = splat(eff_scale[k * NC + c]);
                const Vec<acc_t> sh = splat(eff_shift[k * NC + c]);
                for (int v = 0; v < MV; ++v)
                  storeu(&ybuf[c][v * L],
                         activation_vec<acc_t>(fmadd(acc[c][v], sc, sh), g.act, slope));
              }
              for (int64_t lane = 0; lane < lanes; ++lane) {
                scalar_t* d = out_row + ((u0 + lane) * g.sw + ph.rx - g.pw) * os.w + k * NC * os.c;
                for (int64_t c = 0; c < count; ++c)
                  d[c * os.c] = static_cast<scalar_t>(ybuf[c][lane]);
              }
            }
          }
        }
      }
    }
  };

  const int threads = at::get_num_threads();
  int64_t total_macs = 0;
  for (const Phase& ph : phases)
    total_macs += g.N * ph.rows() * ph.cols() * static_cast<int64_t>(ph.taps.size()) * cin * g.Cout;
  // One parallel region over (image, band of output rows). A band packs the
  // input rows it reads into the thread's buffer (neighbouring bands repeat
  // a kernel's height of rows) and computes its outputs.
  const int64_t total_rows = first_row.back();
  int64_t jy_max = 0;
  for (const Phase& ph : phases)
    for (const auto& tap : ph.taps) jy_max = std::max(jy_max, tap[0]);
  const int64_t bands = g.N >= 2 * threads ? 1 : std::min<int64_t>(total_rows, 4 * threads);
  const int64_t band_rows = (total_rows + bands - 1) / bands;
  std::vector<std::vector<acc_t>> buffers(at::get_num_threads());
  parallel_items(g.N * bands, total_macs, [&](int64_t item, int thread) {
    std::vector<acc_t>& rows = buffers[thread];
    if (rows.empty()) rows.assign(buffer_size, acc_t(0));  // margins stay zero
    const int64_t n = item / bands;
    const int64_t row_begin = (item % bands) * band_rows;
    const int64_t row_end = std::min(total_rows, row_begin + band_rows);
    if (row_begin >= row_end) return;
    // Input rows read by these output rows: t - jy for the rows' t.
    int64_t t_min = INT64_MAX, t_max = INT64_MIN;
    for (size_t r = 0; r < row_groups.size(); ++r) {
      const int64_t lo = std::max(row_begin, first_row[r]), hi = std::min(row_end, first_row[r + 1]);
      if (lo >= hi) continue;
      t_min = std::min(t_min, row_groups[r].t0 + lo - first_row[r]);
      t_max = std::max(t_max, row_groups[r].t0 + hi - 1 - first_row[r]);
    }
    pack_rows(rows.data(), n, std::clamp<int64_t>(t_min - jy_max, 0, g.H),
              std::clamp<int64_t>(t_max + 1, 0, g.H));
    compute_rows(rows.data(), n, row_begin, row_end);
  });
}

}  // namespace

template <typename scalar_t>
void run_pixel_lanes(const Geometry& g, const std::vector<Phase>& phases, const at::Tensor& x,
                     const at::Tensor& weight, const std::vector<acc_of<scalar_t>>& eff_scale,
                     const std::vector<acc_of<scalar_t>>& eff_shift, const at::Tensor& out) {
  using acc_t = acc_of<scalar_t>;
  auto run = [&](auto engine) { engine(g, phases, x, weight, eff_scale, eff_shift, out); };
  switch (g.Cout) {
    case 1: return run(pixel_lanes<scalar_t, acc_t, 1, 4>);
    case 2: return run(pixel_lanes<scalar_t, acc_t, 2, 4 * kVectorRegisters / 16>);
    case 3: return run(pixel_lanes<scalar_t, acc_t, 3, 2 * kVectorRegisters / 16>);
    default: return run(pixel_lanes<scalar_t, acc_t, 4, 2 * kVectorRegisters / 16>);
  }
}

#define AIGC_UPSAMPLE_ENGINE_INSTANCE(ENGINE, T)                                              \
  template void ENGINE<T>(const Geometry&, const std::vector<Phase>&, const at::Tensor&,      \
                          const at::Tensor&, const std::vector<acc_of<T>>&,                   \
                          const std::vector<acc_of<T>>&, const at::Tensor&);
AIGC_UPSAMPLE_ENGINE_INSTANCE(run_pixel_lanes, float)
AIGC_UPSAMPLE_ENGINE_INSTANCE(run_pixel_lanes, double)
AIGC_UPSAMPLE_ENGINE_INSTANCE(run_pixel_lanes, c10::BFloat16)
AIGC_UPSAMPLE_ENGINE_INSTANCE(run_pixel_lanes, c10::Half)
#undef AIGC_UPSAMPLE_ENGINE_INSTANCE

}  // namespace aigc::upsample
