// torch.ops.aigc.llm_decode_layers: every layer of a Llama-family decode step in one call.
//
// A small model's decode step is a few dozen tiny operations per layer (norms, rotary
// embedding, cache writes, residual adds) around four matmuls and the attention. Run
// from Python each costs a few microseconds of interpreter and dispatch, which for a
// 30-layer model is more than the matmuls themselves at batch 1. Here the small
// operations are plain loops over the [B, dim] rows, and the matmuls and the attention
// are the project's own ops (aigc::quant_linear for GGUF block formats, at::mm for
// float matrices, aigc::decode_attention over each slot's own length), called through
// the dispatcher from C++.
//
// The arithmetic is the Python path's (aigc_llm.model.LanguageModel.step): RMSNorm in
// float32, rotate-half rotary embeddings from the cos/sin tables, SwiGLU.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "cpu/simd.h"

#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

namespace {

namespace simd = aigc::simd;

constexpr int64_t kFloatMatrix = -1;  // a weight type: float32 [N, K], not a GGUF format

at::Tensor quant_linear(const at::Tensor& x, const at::Tensor& weight, int64_t qtype,
                        int64_t K) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("aigc::quant_linear", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                            const std::optional<at::Tensor>&, bool)>();
  return op.call(x, weight, qtype, K, std::nullopt, false);
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& lengths, double scale) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("aigc::decode_attention", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, const at::Tensor&, double)>();
  return op.call(q, k, v, lengths, scale);
}

// y = x @ W^T for W in a GGUF block format (type >= 0) or float32 [N, K].
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, int64_t type) {
  if (type == kFloatMatrix) return at::mm(x, w.t());
  return quant_linear(x, w, type, x.size(1));
}

// One layer's matrix, stored as parts[first, first + count) stacked along N: a file may
// quantize q, k and v (or gate and up) in different formats, and then they stay apart.
struct Parts {
  at::TensorList weights;
  at::IntArrayRef types;
  std::vector<int64_t> first;  // first part of each layer, and one past the last

  Parts(at::TensorList w, at::IntArrayRef t, at::IntArrayRef counts, const char* name)
      : weights(w), types(t) {
    first.push_back(0);
    for (int64_t c : counts) {
      TORCH_CHECK_VALUE(c >= 1, "aigc.llm_decode_layers: ", name, " has a layer of no parts");
      first.push_back(first.back() + c);
    }
    TORCH_CHECK_VALUE(first.back() == static_cast<int64_t>(w.size()) &&
                          w.size() == t.size(),
                      "aigc.llm_decode_layers: ", name,
                      " must have one weight and one type per part");
  }

  at::Tensor apply(const at::Tensor& x, int64_t layer) const {
    const int64_t a = first[layer], b = first[layer + 1];
    if (b - a == 1) return linear(x, weights[a], types[a]);
    std::vector<at::Tensor> outs;
    for (int64_t i = a; i < b; ++i) outs.push_back(linear(x, weights[i], types[i]));
    return at::cat(outs, 1);
  }
};

// out[b] = x[b] / sqrt(mean(x[b]^2) + eps) * gain (out may be x)
void rms_norm(const at::Tensor& x, const at::Tensor& gain, double eps, const at::Tensor& out) {
  const int64_t B = x.size(0), dim = x.size(1);
  const float* g = gain.data_ptr<float>();
  constexpr int64_t kLanes = simd::kLanes<float>;
  for (int64_t b = 0; b < B; ++b) {
    const float* xr = x.data_ptr<float>() + b * dim;
    float* o = out.data_ptr<float>() + b * dim;
    // Two vector chains: a scalar sum is one addition's latency per element.
    simd::Vec8f s0{}, s1{};
    int64_t i = 0;
    for (; i + 2 * kLanes <= dim; i += 2 * kLanes) {
      const simd::Vec8f a = simd::loadu(xr + i), c = simd::loadu(xr + i + kLanes);
      s0 = simd::fmadd(a, a, s0);
      s1 = simd::fmadd(c, c, s1);
    }
    float sum = simd::hsum(s0 + s1);
    for (; i < dim; ++i) sum += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(sum / static_cast<float>(dim) + static_cast<float>(eps));
    for (i = 0; i < dim; ++i) o[i] = xr[i] * inv * g[i];
  }
}

// Rotate-half rotary embedding of `heads` heads of size D starting at `row`, in place.
void rope(float* row, int64_t heads, int64_t D, const float* cos, const float* sin) {
  const int64_t half = D / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* x = row + h * D;
    for (int64_t i = 0; i < half; ++i) {
      const float x1 = x[i], x2 = x[i + half];
      x[i] = x1 * cos[i] - x2 * sin[i];
      x[i + half] = x2 * cos[i + half] + x1 * sin[i + half];
    }
  }
}

// x += y, both contiguous [B, dim] (a loop: TensorIterator's set-up costs more
// than adding 576 floats).
void add_rows(const at::Tensor& x, const at::Tensor& y) {
  float* a = x.data_ptr<float>();
  const float* b = y.data_ptr<float>();
  const int64_t n = x.numel();
  int64_t i = 0;
  for (; i + simd::kLanes<float> <= n; i += simd::kLanes<float>)
    simd::storeu(a + i, simd::loadu(a + i) + simd::loadu(b + i));
  for (; i < n; ++i) a[i] += b[i];
}

void check(bool ok, const char* what) { TORCH_CHECK_VALUE(ok, "aigc.llm_decode_layers: ", what); }

void llm_decode_layers_cpu(const at::Tensor& x, at::TensorList qkv, at::IntArrayRef qkv_types,
                           at::IntArrayRef qkv_parts, at::TensorList qkv_bias,
                           at::TensorList out_proj, at::IntArrayRef out_types,
                           at::TensorList gate_up, at::IntArrayRef gate_up_types,
                           at::IntArrayRef gate_up_parts, at::TensorList down,
                           at::IntArrayRef down_types, at::TensorList attn_norm,
                           at::TensorList mlp_norm, const at::Tensor& k_cache,
                           const at::Tensor& v_cache, const at::Tensor& positions,
                           const at::Tensor& lengths, const at::Tensor& cos,
                           const at::Tensor& sin, int64_t n_heads, int64_t n_kv_heads,
                           double eps, double scale, const std::optional<at::Tensor>& final_norm) {
  const int64_t L = static_cast<int64_t>(out_proj.size());
  check(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(),
        "x must be a contiguous float32 [B, dim] tensor");
  check(static_cast<int64_t>(qkv_parts.size()) == L &&
            static_cast<int64_t>(gate_up_parts.size()) == L &&
            static_cast<int64_t>(out_types.size()) == L &&
            static_cast<int64_t>(down.size()) == L &&
            static_cast<int64_t>(down_types.size()) == L &&
            static_cast<int64_t>(attn_norm.size()) == L &&
            static_cast<int64_t>(mlp_norm.size()) == L,
        "every per-layer list must have one entry per layer");
  check(qkv_bias.empty() || static_cast<int64_t>(qkv_bias.size()) == L,
        "qkv_bias must be empty or have one entry per layer");
  check(k_cache.dim() == 5 && k_cache.sizes() == v_cache.sizes() && k_cache.size(0) == L &&
            k_cache.scalar_type() == at::kFloat && v_cache.scalar_type() == at::kFloat,
        "k_cache and v_cache must be float32 [layers, B, Hkv, max_len, D]");
  const int64_t B = x.size(0);
  const int64_t T = k_cache.size(3), D = k_cache.size(4);
  // Each layer's [B, Hkv, max_len, D] block must be contiguous; the layers may lie
  // further apart, so that a step can run over the first B slots of a larger cache.
  const auto slots_contiguous = [&](const at::Tensor& c) {
    return c.stride(4) == 1 && c.stride(3) == D && c.stride(2) == T * D &&
           c.stride(1) == c.size(2) * T * D && c.stride(0) >= B * c.size(2) * T * D &&
           c.stride(0) == k_cache.stride(0);
  };
  check(slots_contiguous(k_cache) && slots_contiguous(v_cache),
        "each layer of k_cache and v_cache must be a contiguous [B, Hkv, max_len, D] block");
  const int64_t layer_stride = k_cache.stride(0);
  check(k_cache.size(1) == B && k_cache.size(2) == n_kv_heads, "the cache does not match x");
  check(n_heads % n_kv_heads == 0 && D % 2 == 0, "bad head counts");
  check(positions.scalar_type() == at::kLong && positions.numel() == B &&
            lengths.scalar_type() == at::kLong && lengths.numel() == B,
        "positions and lengths must be int64 [B]");
  check(cos.scalar_type() == at::kFloat && sin.scalar_type() == at::kFloat && cos.dim() == 2 &&
            cos.size(1) == D && cos.is_contiguous() && sin.is_contiguous(),
        "cos and sin must be contiguous float32 [positions, D]");
  const int64_t q_width = n_heads * D, kv_width = n_kv_heads * D;
  const int64_t* pos = positions.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b)
    check(pos[b] >= 0 && pos[b] < T && pos[b] < cos.size(0), "a position is outside the cache");

  const Parts qkv_weights(qkv, qkv_types, qkv_parts, "qkv");
  const Parts gate_up_weights(gate_up, gate_up_types, gate_up_parts, "gate_up");
  if (final_norm.has_value())
    check(final_norm->scalar_type() == at::kFloat && final_norm->is_contiguous() &&
              final_norm->numel() == x.size(1),
          "final_norm must be a contiguous float32 [dim] tensor");
  at::Tensor xn = at::empty_like(x);
  at::Tensor act;  // SwiGLU's output, [B, hidden]: allocated by the first layer
  for (int64_t l = 0; l < L; ++l) {
    rms_norm(x, attn_norm[l], eps, xn);
    at::Tensor proj = qkv_weights.apply(xn, l);  // [B, q | k | v]
    if (!qkv_bias.empty()) proj.add_(qkv_bias[l]);
    const int64_t width = proj.size(1);
    check(width == q_width + 2 * kv_width, "qkv has the wrong number of rows");
    float* p = proj.data_ptr<float>();
    float* kc = k_cache.data_ptr<float>() + l * layer_stride;
    float* vc = v_cache.data_ptr<float>() + l * layer_stride;
    for (int64_t b = 0; b < B; ++b) {
      float* row = p + b * width;
      const float* c = cos.data_ptr<float>() + pos[b] * D;
      const float* s = sin.data_ptr<float>() + pos[b] * D;
      rope(row, n_heads + n_kv_heads, D, c, s);  // q and k are adjacent
      for (int64_t h = 0; h < n_kv_heads; ++h) {
        const int64_t at = ((b * n_kv_heads + h) * T + pos[b]) * D;
        std::memcpy(kc + at, row + q_width + h * D, D * sizeof(float));
        std::memcpy(vc + at, row + q_width + kv_width + h * D, D * sizeof(float));
      }
    }
    const at::Tensor q = proj.narrow(1, 0, q_width).view({B, n_heads, D});
    // Layer l's [B, Hkv, T, D] block, as attention reads it (one op, not a select).
    const std::vector<int64_t> sizes{B, n_kv_heads, T, D}, strides{T * kv_width, T * D, D, 1};
    const at::Tensor k_layer =
        k_cache.as_strided(sizes, strides, k_cache.storage_offset() + l * layer_stride);
    const at::Tensor v_layer =
        v_cache.as_strided(sizes, strides, v_cache.storage_offset() + l * layer_stride);
    const at::Tensor attention = decode_attention(q, k_layer, v_layer, lengths, scale);
    add_rows(x, linear(attention.view({B, q_width}), out_proj[l], out_types[l]));

    rms_norm(x, mlp_norm[l], eps, xn);
    at::Tensor gu = gate_up_weights.apply(xn, l);  // [B, gate | up]
    const int64_t hidden = gu.size(1) / 2;
    if (!act.defined() || act.size(1) != hidden) act = at::empty({B, hidden}, x.options());
    for (int64_t b = 0; b < B; ++b) {
      const float* g = gu.data_ptr<float>() + b * 2 * hidden;
      const float* u = g + hidden;
      float* a = act.data_ptr<float>() + b * hidden;
      int64_t i = 0;
      for (; i + simd::kLanes<float> <= hidden; i += simd::kLanes<float>) {
        const simd::Vec8f gate = simd::loadu(g + i);
        simd::storeu(a + i, gate * simd::sigmoid_ps(gate) * simd::loadu(u + i));
      }
      for (; i < hidden; ++i) a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    }
    add_rows(x, linear(act, down[l], down_types[l]));
  }
  // The model's last norm, in place: the caller's logits are then one matmul away.
  if (final_norm.has_value()) rms_norm(x, *final_norm, eps, x);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(aigc, m) {
  m.def(
      "llm_decode_layers(Tensor(a!) x, Tensor[] qkv, int[] qkv_types, int[] qkv_parts, "
      "Tensor[] qkv_bias, Tensor[] out_proj, int[] out_types, Tensor[] gate_up, "
      "int[] gate_up_types, int[] gate_up_parts, "
      "Tensor[] down, int[] down_types, Tensor[] attn_norm, Tensor[] mlp_norm, "
      "Tensor(b!) k_cache, Tensor(c!) v_cache, Tensor positions, Tensor lengths, Tensor cos, "
      "Tensor sin, int n_heads, int n_kv_heads, float eps, float scale, "
      "Tensor? final_norm=None) -> ()");
}

TORCH_LIBRARY_IMPL(aigc, CPU, m) { m.impl("llm_decode_layers", &llm_decode_layers_cpu); }
