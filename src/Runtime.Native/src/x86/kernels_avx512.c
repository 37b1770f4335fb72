/*
 * x86-64 integer kernels for AVX-512 F/BW/VL + AVX512-VNNI. This file alone is compiled with those flags; the
 * dispatcher hands the table out only when cpuid reports them and XCR0 shows that the OS saves ZMM state.
 * The float paths and activation quantization are the AVX2 ones (kernels_x86.h).
 *
 * One zmm holds the 8-lane accumulators of kernels.h's contract for two weight rows: lanes 0-7 row j, lanes 8-15
 * row j'. The activation block is broadcast to both 256-bit halves, so one vpdpbusd computes both rows' lanes,
 * and each half is exactly the reference's accumulator, reduced in the same order at the end.
 */
#include <immintrin.h>

#include "../kernels.h"
#include "kernels_x86.h"

enum { W_Q8_0, W_Q4_0, W_I8 };

/* Register tile: MR activation rows by NP pairs of weight rows, MR·NP accumulators of the 32 zmm registers. */
enum { MR = 4, NP = 4 };

/*
 * Decode (m = 1) is bound by memory: tiles of 2 pairs, each prefetching the next 4 rows, matched or beat the AVX2
 * table's 4-row tiles here (bench_matmul, 6-10 alternating runs, medians within -1..+9%), where 4 pairs were 2-6% slower.
 */
enum { DECODE_NP = 2 };

typedef struct qrows {
    const uint8_t * base;      /* row 0 */
    int64_t stride;            /* bytes per row */
    int64_t rows;
    const uint8_t * scales;    /* int8: the row-scale table */
} qrows;

static ODLLM_ALWAYS_INLINE int64_t block_bytes(int kind) {
    return kind == W_Q8_0 ? ODLLM_Q8_0_BYTES : kind == W_Q4_0 ? ODLLM_Q4_0_BYTES : ODLLM_QK;
}

/*
 * vpdpbusd multiplies unsigned by signed bytes. Weights are made unsigned (Q4_0's nibbles already are, w + 8;
 * int8 values become w + 128) and the excess comes back as the accumulator's start: -bias·(sum of the 4 x),
 * computed once per activation block. The int32 sums never overflow: 4·255·127 + 4·128·127 < 2^31.
 */
static ODLLM_ALWAYS_INLINE int unsigned_offset(int kind) { return kind == W_Q4_0 ? 8 : 128; }

/* Block b of weight rows j (bytes 0..31) and j' (bytes 32..63), as the unsigned bytes above, values in order. */
static ODLLM_ALWAYS_INLINE __m512i load_pair(int kind, const uint8_t * block0, const uint8_t * block1) {
    if (kind == W_Q4_0) {
        /*
         * 128-bit chunks [j, j, j', j'] of packed nibbles; shifting the 2nd and 4th chunk by 4 brings the high
         * nibbles (values 16..31) down, so each 32-byte half reads values 0..31 in order after the mask.
         */
        const __m512i twice = _mm512_mask_broadcast_i32x4(
            _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(block0 + 2))), 0xFF00,
            _mm_loadu_si128((const __m128i *)(block1 + 2)));
        const __m512i shifted = _mm512_srlv_epi64(twice, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
        return _mm512_and_si512(shifted, _mm512_set1_epi8(0x0F));
    }
    const int64_t skip = kind == W_Q8_0 ? 2 : 0;
    const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(block0 + skip))),
                                            _mm256_loadu_si256((const __m256i *)(block1 + skip)), 1);
    return _mm512_xor_si512(both, _mm512_set1_epi8((char)0x80));
}

/* Block scales of 2·pairs rows at byte offset off, in one conversion: pair p's vector is rows 2p, 2p+1 over 8 lanes each. */
static ODLLM_ALWAYS_INLINE void pair_scales(int pairs, const uint8_t * const * row, int64_t off, __m512 * dw) {
    uint64_t lo = 0, hi = 0;
    for (int r = 0; r < 2 * pairs; r++) {
        const uint64_t h = odllm_load_u16(row[r] + off);
        if (r < 4) lo |= h << (16 * r);
        else hi |= h << (16 * (r - 4));
    }
    const __m512 all = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo)));
    for (int p = 0; p < pairs; p++)
        dw[p] = _mm512_permutexvar_ps(_mm512_setr_epi32(2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p,
                                                        2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1,
                                                        2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1), all);
}

/* Reduces both halves of acc in hsum's order (kernels.h): ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)). */
static ODLLM_ALWAYS_INLINE void store_pair(__m512 acc, float * y0, float * y1, float s0, float s1, int scaled, int both) {
    __m512 s = _mm512_add_ps(acc, _mm512_shuffle_f32x4(acc, acc, _MM_SHUFFLE(2, 3, 0, 1)));
    s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(2, 3, 0, 1)));
    const float r0 = _mm512_cvtss_f32(s);
    *y0 = scaled ? r0 * s0 : r0;
    if (both) {
        const float r1 = _mm_cvtss_f32(_mm512_extractf32x4_ps(s, 2));
        *y1 = scaled ? r1 * s1 : r1;
    }
}

/*
 * rows activation rows (<= MR) against cols weight rows from j (<= 2·NP, an odd count repeats the last row in its
 * pair's second half and discards it). Each weight block is loaded and unpacked once for all rows, each activation
 * block and its bias once for all pairs, and the block scales of all pairs converted together.
 */
static ODLLM_ALWAYS_INLINE void tile_q(int kind, int rows, int pairs, const int8_t * xq, const float * xd, int64_t k,
                                       const qrows * w, int64_t j, int cols, float * y, int64_t ldy) {
    const int64_t nb = k / ODLLM_QK, bytes = block_bytes(kind);
    /* Decode streams each weight once: touching the next tile's rows keeps the prefetcher ahead (as the AVX2 table). */
    const int prefetch = rows == 1 && j + 4 * pairs <= w->rows;
    const uint8_t * row[2 * NP];
    for (int r = 0; r < 2 * pairs; r++) row[r] = w->base + (j + (r < cols ? r : cols - 1)) * w->stride;
    const __m512i offset = _mm512_set1_epi8((char)unsigned_offset(kind));
    __m512 acc[MR][NP];
    for (int i = 0; i < rows; i++)
        for (int p = 0; p < pairs; p++) acc[i][p] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (prefetch)
            for (int r = 0; r < 2 * pairs; r++) _mm_prefetch((const char *)(row[r] + b * bytes + 2 * pairs * w->stride), _MM_HINT_T0);
        /* All pairs' weights and scales first, then one activation row at a time: 2·NP + MR·NP registers live. */
        __m512i wv[NP];
        __m512 dw[NP];
        for (int p = 0; p < pairs; p++) wv[p] = load_pair(kind, row[2 * p] + b * bytes, row[2 * p + 1] + b * bytes);
        if (kind != W_I8) pair_scales(pairs, row, b * bytes, dw);
        for (int i = 0; i < rows; i++) {
            const __m512i xv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(xq + i * k + b * ODLLM_QK)));
            const __m512i start = _mm512_sub_epi32(_mm512_setzero_si512(),
                                                   _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, xv));
            const __m512 dx = _mm512_set1_ps(xd[i * nb + b]);
            for (int p = 0; p < pairs; p++) {
                const __m512 lanes = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(start, wv[p], xv));
                /* c = dw·dx: the reference's f32 product, per half. int8: c = dx, the row scale comes last. */
                const __m512 c = kind == W_I8 ? dx : _mm512_mul_ps(dw[p], dx);
                acc[i][p] = _mm512_fmadd_ps(lanes, c, acc[i][p]);
            }
        }
    }
    for (int p = 0; p < pairs; p++) {
        const int64_t r0 = j + 2 * p, r1 = r0 + 1;
        const int both = 2 * p + 1 < cols;
        const float s0 = kind == W_I8 ? odllm_load_f32(w->scales + r0 * 4) : 1.0f;
        const float s1 = kind == W_I8 && both ? odllm_load_f32(w->scales + r1 * 4) : 1.0f;
        for (int i = 0; i < rows; i++)
            store_pair(acc[i][p], y + i * ldy + 2 * p, y + i * ldy + 2 * p + 1, s0, s1, kind == W_I8, both);
    }
}

/* Every (rows, pairs) shape a call can end with, each a separate specialization of tile_q. */
#define ODLLM_TILE(R, P) tile_q(kind, R, P, xq, xd, k, w, j, cols, y, ldy)
#define ODLLM_TILE_ROWS(P)                      \
    switch (rows) {                             \
    case 1: ODLLM_TILE(1, P); break;            \
    case 2: ODLLM_TILE(2, P); break;            \
    case 3: ODLLM_TILE(3, P); break;            \
    default: ODLLM_TILE(4, P); break;           \
    }

static ODLLM_ALWAYS_INLINE void tile_any(int kind, int rows, const int8_t * xq, const float * xd, int64_t k,
                                         const qrows * w, int64_t j, int cols, float * y, int64_t ldy) {
    switch ((cols + 1) / 2) {
    case 1: ODLLM_TILE_ROWS(1); break;
    case 2: ODLLM_TILE_ROWS(2); break;
    case 3: ODLLM_TILE_ROWS(3); break;
    default: ODLLM_TILE_ROWS(4); break;
    }
}

#undef ODLLM_TILE_ROWS
#undef ODLLM_TILE

/*
 * Prefill packs each 2·NP-row weight tile once: its blocks unpacked to signed bytes and its scales spread
 * over the lanes, KC blocks at a time (48 KiB on the stack, in L1/L2 with the activation rows), so the unpacking and the scale
 * shuffles leave the inner loop and are paid once per tile instead of once per MR activation rows.
 */
enum {
    KC = 64,             /* blocks per packed chunk */
    RG = 64,             /* activation rows per group when k spans several chunks: their accumulators wait in keep */
    PACK_MIN_ROWS = 8,   /* fewer rows do not repay the packing */
};

/*
 * The packed tile turns vpdpbusd's operands around: the activations become unsigned (x + 128) and the signed
 * weights come from memory, so the correction, -128·(sum of the 4 w), belongs to the weights and is packed with
 * them: each product's accumulator starts as a load, with no per-row bias to compute and no register to copy.
 */
typedef struct packed_block {
    __m512i w[NP];    /* each pair's weights in load_pair's order, as signed values */
    __m512i fix[NP];  /* each pair's -128·(sum of the 4 w) per lane */
    __m512 dw[NP];    /* each pair's scales, as pair_scales returns them */
} packed_block;

static ODLLM_ALWAYS_INLINE void pack_tile(int kind, const qrows * w, int64_t j, int64_t b0, int64_t count,
                                          packed_block * out) {
    const int64_t bytes = block_bytes(kind);
    const uint8_t * row[2 * NP];
    for (int r = 0; r < 2 * NP; r++) row[r] = w->base + (j + r) * w->stride;
    for (int64_t b = 0; b < count; b++) {
        const int64_t off = (b0 + b) * bytes;
        for (int p = 0; p < NP; p++) {
            /* load_pair's unsigned bytes minus their offset: Q4_0 nibbles - 8, int8 (w + 128) ^ 0x80. */
            const __m512i u = load_pair(kind, row[2 * p] + off, row[2 * p + 1] + off);
            const __m512i v = kind == W_Q4_0 ? _mm512_sub_epi8(u, _mm512_set1_epi8(8))
                                             : _mm512_xor_si512(u, _mm512_set1_epi8((char)0x80));
            out[b].w[p] = v;
            out[b].fix[p] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                             _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), v));
        }
        if (kind != W_I8) pair_scales(NP, row, off, out[b].dw);
    }
}

/*
 * rows activation rows against a packed tile, blocks b0 .. b0+count of k. Accumulators start at zero on the first
 * chunk and from keep otherwise; the last chunk reduces them into y, the others leave them in keep.
 */
static ODLLM_ALWAYS_INLINE void tile_packed(int kind, int rows, const int8_t * xq, const float * xd, int64_t k,
                                            const packed_block * pack, int64_t b0, int64_t count, int first, int last,
                                            __m512 * keep, const qrows * w, int64_t j, float * y, int64_t ldy) {
    const int64_t nb = k / ODLLM_QK;
    __m512 acc[MR][NP];
    for (int i = 0; i < rows; i++)
        for (int p = 0; p < NP; p++) acc[i][p] = first ? _mm512_setzero_ps() : keep[i * NP + p];
    for (int64_t b = 0; b < count; b++) {
        const packed_block * pb = pack + b;
        for (int i = 0; i < rows; i++) {
            const __m512i xv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(xq + i * k + (b0 + b) * ODLLM_QK)));
            const __m512i xu = _mm512_xor_si512(xv, _mm512_set1_epi8((char)0x80));
            const __m512 dx = _mm512_set1_ps(xd[i * nb + b0 + b]);
            for (int p = 0; p < NP; p++) {
                const __m512 lanes = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(pb->fix[p], xu, pb->w[p]));
                const __m512 c = kind == W_I8 ? dx : _mm512_mul_ps(pb->dw[p], dx);
                acc[i][p] = _mm512_fmadd_ps(lanes, c, acc[i][p]);
            }
        }
    }
    if (!last) {
        for (int i = 0; i < rows; i++)
            for (int p = 0; p < NP; p++) keep[i * NP + p] = acc[i][p];
        return;
    }
    for (int p = 0; p < NP; p++) {
        const int64_t r0 = j + 2 * p;
        const float s0 = kind == W_I8 ? odllm_load_f32(w->scales + r0 * 4) : 1.0f;
        const float s1 = kind == W_I8 ? odllm_load_f32(w->scales + (r0 + 1) * 4) : 1.0f;
        for (int i = 0; i < rows; i++)
            store_pair(acc[i][p], y + i * ldy + 2 * p, y + i * ldy + 2 * p + 1, s0, s1, kind == W_I8, 1);
    }
}

static ODLLM_ALWAYS_INLINE void gemm_packed(int kind, const int8_t * xq, const float * xd, int64_t m, const qrows * w,
                                            int64_t j, int64_t k, float * y, int64_t ldy) {
    const int64_t nb = k / ODLLM_QK, chunks = (nb + KC - 1) / KC;
    packed_block pack[KC];
    __m512 keep[RG * NP];
    /* One chunk needs no keep, so every row shares one packing. */
    const int64_t group = chunks == 1 ? m : RG;
    for (int64_t g = 0; g < m; g += group) {
        const int64_t g_rows = m - g < group ? m - g : group;
        for (int64_t c = 0; c < chunks; c++) {
            const int64_t b0 = c * KC, count = nb - b0 < KC ? nb - b0 : KC;
            pack_tile(kind, w, j, b0, count, pack);
            for (int64_t i = g; i < g + g_rows; i += MR) {
                const int rows = g + g_rows - i < MR ? (int)(g + g_rows - i) : MR;
                const int8_t * xi = xq + i * k;
                const float * di = xd + i * nb;
                float * yi = y + i * ldy + j;
                __m512 * ki = keep + (i - g) * NP;
                const int first = c == 0, last = c == chunks - 1;
                switch (rows) {
                case 1: tile_packed(kind, 1, xi, di, k, pack, b0, count, first, last, ki, w, j, yi, ldy); break;
                case 2: tile_packed(kind, 2, xi, di, k, pack, b0, count, first, last, ki, w, j, yi, ldy); break;
                case 3: tile_packed(kind, 3, xi, di, k, pack, b0, count, first, last, ki, w, j, yi, ldy); break;
                default: tile_packed(kind, MR, xi, di, k, pack, b0, count, first, last, ki, w, j, yi, ldy); break;
                }
            }
        }
    }
}

/* Weight tiles outermost: 2·NP rows stay in L1/L2 while every activation row of the call passes over them. */
static ODLLM_ALWAYS_INLINE void gemm_q(int kind, const int8_t * xq, const float * xd, int64_t m, const qrows * w,
                                       int64_t n, int64_t k, float * y, int64_t ldy) {
    const int64_t nb = k / ODLLM_QK;
    if (m == 1) {
        int64_t j = 0;
        for (; j + 2 * DECODE_NP <= n; j += 2 * DECODE_NP) tile_q(kind, 1, DECODE_NP, xq, xd, k, w, j, 2 * DECODE_NP, y + j, ldy);
        if (j < n) tile_any(kind, 1, xq, xd, k, w, j, (int)(n - j), y + j, ldy);
        return;
    }
    for (int64_t j = 0; j < n; j += 2 * NP) {
        const int cols = n - j < 2 * NP ? (int)(n - j) : 2 * NP;
        if (cols == 2 * NP && m >= PACK_MIN_ROWS) {
            gemm_packed(kind, xq, xd, m, w, j, k, y, ldy);
            continue;
        }
        int64_t i = 0;
        if (cols == 2 * NP)
            for (; i + MR <= m; i += MR) tile_q(kind, MR, NP, xq + i * k, xd + i * nb, k, w, j, cols, y + i * ldy + j, ldy);
        for (; i < m; i += MR) {
            const int rows = m - i < MR ? (int)(m - i) : MR;
            tile_any(kind, rows, xq + i * k, xd + i * nb, k, w, j, cols, y + i * ldy + j, ldy);
        }
    }
}

static void gemm_q8_0(const int8_t * xq, const float * xd, int64_t m, const uint8_t * w, int64_t n, int64_t k,
                      float * y, int64_t ldy) {
    const qrows rows = { w, k / ODLLM_QK * ODLLM_Q8_0_BYTES, n, NULL };
    gemm_q(W_Q8_0, xq, xd, m, &rows, n, k, y, ldy);
}

static void gemm_q4_0(const int8_t * xq, const float * xd, int64_t m, const uint8_t * w, int64_t n, int64_t k,
                      float * y, int64_t ldy) {
    const qrows rows = { w, k / ODLLM_QK * ODLLM_Q4_0_BYTES, n, NULL };
    gemm_q(W_Q4_0, xq, xd, m, &rows, n, k, y, ldy);
}

static void gemm_i8(const int8_t * xq, const float * xd, int64_t m, const int8_t * w, const uint8_t * scales,
                    int64_t n, int64_t k, float * y, int64_t ldy) {
    const qrows rows = { (const uint8_t *)w, k, n, scales };
    gemm_q(W_I8, xq, xd, m, &rows, n, k, y, ldy);
}

const odllm_kernel_table odllm_kernels_avx512_vnni = {
    .name = "avx512-vnni",
    .gemm_f32 = odllm_avx2_gemm_f32,
    .gemv_f16 = odllm_avx2_gemv_f16,
    .gemv_bf16 = odllm_avx2_gemv_bf16,
    .f16_to_f32 = odllm_avx2_f16_to_f32,
    .bf16_to_f32 = odllm_avx2_bf16_to_f32,
    .quantize_act = odllm_avx2_quantize_act,
    .gemm_q8_0 = gemm_q8_0,
    .gemm_q4_0 = gemm_q4_0,
    .gemm_i8 = gemm_i8,
    /* Element-wise operators and attention are the AVX2 ones: they are a small share of a token's time. */
    .ops = &odllm_ops_avx2,
    .attend_f32 = odllm_avx2_attend_f32,
    .attend_f16 = odllm_avx2_attend_f16,
};
