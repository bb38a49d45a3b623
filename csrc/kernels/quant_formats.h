// GGUF (ggml) block formats that aigc::quant_linear reads, as plain constants:
// shared by the CPU kernel (csrc/cpu/quant_linear.cpp), the CUDA kernels
// (csrc/kernels/quant_linear.cuh) and the emulation binding. No torch, no CUDA.
//
// A row of K weights is K / block_size blocks laid end to end; all fields
// little-endian, d / dmin IEEE half. Within a block (ggml's layouts):
//
//   Q4_0  (32, 18 B): d, qs[16]            w[j] = d * (nib[j] - 8)
//   Q4_1  (32, 20 B): d, m, qs[16]         w[j] = d * nib[j] + m
//   Q5_0  (32, 22 B): d, qh[4], qs[16]     w[j] = d * ((nib[j] | hbit[j] << 4) - 16)
//   Q5_1  (32, 24 B): d, m, qh[4], qs[16]  w[j] = d * (nib[j] | hbit[j] << 4) + m
//   Q8_0  (32, 34 B): d, qs[32] (int8)     w[j] = d * qs[j]
//     nib[j] = qs[j] & 15 and nib[j + 16] = qs[j] >> 4 (j < 16);
//     hbit[j] = bit j of the 32-bit word qh.
//   Q4_K (256, 144 B): d, dmin, scales[12], qs[128]
//     eight sub-blocks of 32 with 6-bit scale sc[s] and min mn[s] packed in
//     scales[12] (see unpack_q4k_scales); the 64 weights 64c .. 64c + 63 are
//     the low nibbles (sub-block 2c) then the high nibbles (2c + 1) of
//     qs[32c .. 32c + 31]:  w = d * sc[s] * q - dmin * mn[s].
//   Q5_K (256, 176 B): d, dmin, scales[12], qh[32], qs[128]
//     as Q4_K with a fifth bit: bit s of qh[l] is the high bit of element l
//     of sub-block s.
//   Q6_K (256, 210 B): ql[128], qh[64], scales[16] (int8), d
//     halves h = 0, 1 of 128 weights; in half h, for l < 32:
//       q(l)      = ql[64h + l]      & 15 | (qh[32h + l] >> 0 & 3) << 4
//       q(l + 32) = ql[64h + l + 32] & 15 | (qh[32h + l] >> 2 & 3) << 4
//       q(l + 64) = ql[64h + l]      >> 4 | (qh[32h + l] >> 4 & 3) << 4
//       q(l + 96) = ql[64h + l + 32] >> 4 | (qh[32h + l] >> 6 & 3) << 4
//     and w = d * scales[e / 16] * (q - 32) for element e of the super-block.
#pragma once

#include <cstdint>

namespace aigc {
namespace quant {

// GGML type ids (ggml.h's enum ggml_type, gguf.GGMLQuantizationType).
enum QType : int {
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
};

// CPU layouts of Q4_0, Q4_1, Q8_0, Q4_K and Q6_K with 8 rows interleaved ("x8"), made
// from a GGUF matrix by QuantWeight.tiled(): the same weights rearranged so that
// a kernel reading 8 rows side by side finds each block of the 8 rows in one
// place, the scales of the 8 rows as one vector and the quants already in the
// order its integer products want (llama.cpp repacks Q4_0 for its CPU kernels
// in the same spirit). N must be a multiple of 8; a matrix is N / 8 tiles one
// after another, a tile K / block groups, a group the block b of the tile's
// rows 0..7:
//   Q4_0x8 (8 x 18 B): d[8], then qs word c (bytes 4c .. 4c+3) of rows 0..7
//                      for c = 0..3                  (16 + 128 bytes)
//   Q4_1x8 (8 x 20 B): d[8], m[8], then the qs words as Q4_0x8  (32 + 128)
//   Q8_0x8 (8 x 34 B): d[8], then qs word c of rows 0..7 for c = 0..7
//                                                    (16 + 256 bytes)
//   Q4_Kx8 (8 x 144 B): d[8], dmin[8], then word c of rows 0..7 for c = 0..34:
//                      words 0-2 the 12 scale bytes, 3-34 the qs (32 + 1120)
//   Q6_Kx8 (8 x 210 B): d[8] (bytes 208-209 of a block), then the int8 scales
//                      in pairs: for p = 0..7, (sc[2p], sc[2p + 1]) of rows
//                      0..7; then the 6-bit weights q (0..63, as Q6_K
//                      decodes them before subtracting 32), repacked: chunk p
//                      is weights 32p .. 32p + 31 of a row, its word t
//                      (t = 0..7) the weights 32p + 2t, +1, +16, +17. Step s
//                      (s = 0..15, h = s / 8, t = s % 8) is three vectors
//                      v0, v1, v2 of word t of rows 0..7, vk holding chunk
//                      4h + k in bits 0-5 and bits 2k, 2k + 1 of chunk
//                      4h + 3 in bits 6-7                 (16 + 128 + 1536)
// Q4_0x16 and Q4_1x16 (N a multiple of 16) hold 16 rows a tile, as two 8-row
// halves whose groups alternate: group b of the x8 layout's half 0, then that of
// half 1, then block b + 1. A kernel computing both halves at once for several
// rows of x, each broadcast of the activations then serving 16 columns, reads
// one sequential stream.
// A row still takes K / block * bytes of its GGUF type, so the matrix keeps its
// shape [N, row bytes]. The type ids are the GGUF type's plus kTiledX8 (kTiledX16).
constexpr int kTiledX8 = 256;
constexpr int kTiledX16 = 512;
enum TiledType : int {
  kQ4_0x8 = kTiledX8 + kQ4_0,
  kQ4_1x8 = kTiledX8 + kQ4_1,
  kQ8_0x8 = kTiledX8 + kQ8_0,
  kQ4_Kx8 = kTiledX8 + kQ4_K,
  kQ6_Kx8 = kTiledX8 + kQ6_K,
  kQ4_0x16 = kTiledX16 + kQ4_0,
  kQ4_1x16 = kTiledX16 + kQ4_1,
};
constexpr int kTileRowsX8 = 8;

// The GGUF type a tiled type rearranges (0 for any other type).
constexpr int tiled_base(int qtype) {
  switch (qtype) {
    case kQ4_0x8: case kQ4_1x8: case kQ8_0x8: case kQ4_Kx8: case kQ6_Kx8: return qtype - kTiledX8;
    case kQ4_0x16: case kQ4_1x16: return qtype - kTiledX16;
    default: return 0;
  }
}

// Rows a tile of a tiled type holds (16 for the x16 types, else 8).
constexpr int tile_rows(int qtype) { return qtype > kTiledX16 ? 16 : kTileRowsX8; }

// The float16 scales of a block of a tiled type's base: the bytes they take
// (d, and m for Q4_1 or dmin for Q4_K) and where they start (Q6_K's d is last).
// A group holds them for its 8 rows first, then the words of the other bytes
// (Q6_Kx8: its scales and weights repacked, as described above).
constexpr int block_scale_bytes(int base) { return base == kQ4_1 || base == kQ4_K ? 4 : 2; }
constexpr int block_scale_offset(int base) { return base == kQ6_K ? 208 : 0; }
// Where a Q6_Kx8 group's scale pairs and weight steps start.
constexpr int kQ6TileScalesAt = 16;
constexpr int kQ6TileWordsAt = kQ6TileScalesAt + 128;

struct Format {
  int block;  // weights per block
  int bytes;  // bytes per block
};

// {0, 0} for a type quant_linear does not read.
constexpr Format format_of(int qtype) {
  switch (qtype) {
    case kQ4_0: return {32, 18};
    case kQ4_1: return {32, 20};
    case kQ5_0: return {32, 22};
    case kQ5_1: return {32, 24};
    case kQ8_0: return {32, 34};
    case kQ4_K: return {256, 144};
    case kQ5_K: return {256, 176};
    case kQ6_K: return {256, 210};
    default: return {0, 0};
  }
}

constexpr const char* name_of(int qtype) {
  switch (qtype) {
    case kQ4_0: return "Q4_0";
    case kQ4_1: return "Q4_1";
    case kQ5_0: return "Q5_0";
    case kQ5_1: return "Q5_1";
    case kQ8_0: return "Q8_0";
    case kQ4_K: return "Q4_K";
    case kQ5_K: return "Q5_K";
    case kQ6_K: return "Q6_K";
    case kQ4_0x8: return "Q4_0x8";
    case kQ4_1x8: return "Q4_1x8";
    case kQ8_0x8: return "Q8_0x8";
    case kQ4_Kx8: return "Q4_Kx8";
    case kQ6_Kx8: return "Q6_Kx8";
    case kQ4_0x16: return "Q4_0x16";
    case kQ4_1x16: return "Q4_1x16";
    default: return "unsupported";
  }
}

constexpr bool is_k_quant(int qtype) { return format_of(qtype).block == 256; }

// The eight 6-bit scales and mins of a Q4_K / Q5_K super-block from its 12
// bytes, read as three little-endian words b0, b1, b2:
//   sc[0..3] = low 6 bits of bytes 0-3, mn[0..3] = low 6 bits of bytes 4-7,
//   sc[4..7] = low nibbles of bytes 8-11 | (top 2 bits of bytes 0-3) << 4,
//   mn[4..7] = high nibbles of bytes 8-11 | (top 2 bits of bytes 4-7) << 4.
// Out: sc_lo/sc_hi/mn_lo/mn_hi hold the bytes of sc[0..3], sc[4..7], ...
struct KScales {
  uint32_t sc_lo, sc_hi, mn_lo, mn_hi;
};
#if defined(__CUDACC__)
__host__ __device__
#endif
inline KScales unpack_k_scales(uint32_t b0, uint32_t b1, uint32_t b2) {
  return {b0 & 0x3f3f3f3fu, (b2 & 0x0f0f0f0fu) | ((b0 >> 2) & 0x30303030u), b1 & 0x3f3f3f3fu,
          ((b2 >> 4) & 0x0f0f0f0fu) | ((b1 >> 2) & 0x30303030u)};
}

}  // namespace quant
}  // namespace aigc
