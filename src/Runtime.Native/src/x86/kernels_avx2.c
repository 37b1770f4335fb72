/*
 * x86-64 kernels for AVX2 + FMA + F16C. This file alone is compiled with -mavx2 -mfma -mf16c;
 * the dispatcher only hands out this table after cpuid/xgetbv confirm all three.
 */
#ifndef ODLLM_X86_VNNI
#  define ODLLM_X86_VNNI 0
#endif

#include <immintrin.h>

#include "../kernels.h"
#include "kernels_x86.h"
#include "simd_avx2.h"

/* The float paths need no VNNI: only the plain AVX2 build compiles them, and every x86 table shares them. */
#if !ODLLM_X86_VNNI

/* Lanes [0, r) set: loads the last k % 8 floats without touching memory past the row. */
static inline __m256i tail_mask(int64_t r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __m256 load_bf16x8(const uint16_t * p) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

static float dot_f32(const float * a, const float * b, int64_t k) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= k; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    if (i < k) {
        __m256i mask = tail_mask(k - i);
        s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, mask), _mm256_maskload_ps(b + i, mask), s1);
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

/* Two x rows against four w rows: 8 accumulators, 6 loads per 8 FMAs. */
static void tile_2x4(const float * x, int64_t ldx, const float * w, int64_t ldw, int64_t k,
                     float * y, int64_t ldy) {
    const float *x0 = x, *x1 = x + ldx;
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
    __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps(), a02 = _mm256_setzero_ps(), a03 = _mm256_setzero_ps();
    __m256 a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps(), a12 = _mm256_setzero_ps(), a13 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 v0 = _mm256_loadu_ps(x0 + i), v1 = _mm256_loadu_ps(x1 + i);
        __m256 b;
        b = _mm256_loadu_ps(w0 + i); a00 = _mm256_fmadd_ps(v0, b, a00); a10 = _mm256_fmadd_ps(v1, b, a10);
        b = _mm256_loadu_ps(w1 + i); a01 = _mm256_fmadd_ps(v0, b, a01); a11 = _mm256_fmadd_ps(v1, b, a11);
        b = _mm256_loadu_ps(w2 + i); a02 = _mm256_fmadd_ps(v0, b, a02); a12 = _mm256_fmadd_ps(v1, b, a12);
        b = _mm256_loadu_ps(w3 + i); a03 = _mm256_fmadd_ps(v0, b, a03); a13 = _mm256_fmadd_ps(v1, b, a13);
    }
    if (i < k) {
        __m256i mask = tail_mask(k - i);
        __m256 v0 = _mm256_maskload_ps(x0 + i, mask), v1 = _mm256_maskload_ps(x1 + i, mask);
        __m256 b;
        b = _mm256_maskload_ps(w0 + i, mask); a00 = _mm256_fmadd_ps(v0, b, a00); a10 = _mm256_fmadd_ps(v1, b, a10);
        b = _mm256_maskload_ps(w1 + i, mask); a01 = _mm256_fmadd_ps(v0, b, a01); a11 = _mm256_fmadd_ps(v1, b, a11);
        b = _mm256_maskload_ps(w2 + i, mask); a02 = _mm256_fmadd_ps(v0, b, a02); a12 = _mm256_fmadd_ps(v1, b, a12);
        b = _mm256_maskload_ps(w3 + i, mask); a03 = _mm256_fmadd_ps(v0, b, a03); a13 = _mm256_fmadd_ps(v1, b, a13);
    }
    y[0] = hsum(a00); y[1] = hsum(a01); y[2] = hsum(a02); y[3] = hsum(a03);
    y[ldy + 0] = hsum(a10); y[ldy + 1] = hsum(a11); y[ldy + 2] = hsum(a12); y[ldy + 3] = hsum(a13);
}

static void tile_1x4(const float * x, const float * w, int64_t ldw, int64_t k, float * y) {
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w0 + i), a0);
        a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w1 + i), a1);
        a2 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w2 + i), a2);
        a3 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w3 + i), a3);
    }
    if (i < k) {
        __m256i mask = tail_mask(k - i);
        __m256 v = _mm256_maskload_ps(x + i, mask);
        a0 = _mm256_fmadd_ps(v, _mm256_maskload_ps(w0 + i, mask), a0);
        a1 = _mm256_fmadd_ps(v, _mm256_maskload_ps(w1 + i, mask), a1);
        a2 = _mm256_fmadd_ps(v, _mm256_maskload_ps(w2 + i, mask), a2);
        a3 = _mm256_fmadd_ps(v, _mm256_maskload_ps(w3 + i, mask), a3);
    }
    y[0] = hsum(a0); y[1] = hsum(a1); y[2] = hsum(a2); y[3] = hsum(a3);
}

/* Weight rows outermost: a group of four stays in cache while every x row passes over it. */
void odllm_avx2_gemm_f32(const float * x, int64_t ldx, int64_t m, const float * w, int64_t ldw,
                         int64_t n, int64_t k, float * y, int64_t ldy) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const float * wj = w + j * ldw;
        int64_t i = 0;
        for (; i + 2 <= m; i += 2) tile_2x4(x + i * ldx, ldx, wj, ldw, k, y + i * ldy + j, ldy);
        if (i < m) tile_1x4(x + i * ldx, wj, ldw, k, y + i * ldy + j);
    }
    for (; j < n; j++)
        for (int64_t i = 0; i < m; i++) y[i * ldy + j] = dot_f32(x + i * ldx, w + j * ldw, k);
}

void odllm_avx2_gemv_f16(const float * x, const uint16_t * w, int64_t ldw, int64_t n, int64_t k, float * y) {
    for (int64_t j = 0; j < n; j++) {
        const uint16_t * row = w + j * ldw;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 32 <= k; i += 32) {
            s0 = _mm256_fmadd_ps(load_f16x8(row + i), _mm256_loadu_ps(x + i), s0);
            s1 = _mm256_fmadd_ps(load_f16x8(row + i + 8), _mm256_loadu_ps(x + i + 8), s1);
            s2 = _mm256_fmadd_ps(load_f16x8(row + i + 16), _mm256_loadu_ps(x + i + 16), s2);
            s3 = _mm256_fmadd_ps(load_f16x8(row + i + 24), _mm256_loadu_ps(x + i + 24), s3);
        }
        for (; i + 8 <= k; i += 8)
            s0 = _mm256_fmadd_ps(load_f16x8(row + i), _mm256_loadu_ps(x + i), s0);
        float sum = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        for (; i < k; i++) sum += _cvtsh_ss(row[i]) * x[i];
        y[j] = sum;
    }
}

void odllm_avx2_gemv_bf16(const float * x, const uint16_t * w, int64_t ldw, int64_t n, int64_t k, float * y) {
    for (int64_t j = 0; j < n; j++) {
        const uint16_t * row = w + j * ldw;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 32 <= k; i += 32) {
            s0 = _mm256_fmadd_ps(load_bf16x8(row + i), _mm256_loadu_ps(x + i), s0);
            s1 = _mm256_fmadd_ps(load_bf16x8(row + i + 8), _mm256_loadu_ps(x + i + 8), s1);
            s2 = _mm256_fmadd_ps(load_bf16x8(row + i + 16), _mm256_loadu_ps(x + i + 16), s2);
            s3 = _mm256_fmadd_ps(load_bf16x8(row + i + 24), _mm256_loadu_ps(x + i + 24), s3);
        }
        for (; i + 8 <= k; i += 8)
            s0 = _mm256_fmadd_ps(load_bf16x8(row + i), _mm256_loadu_ps(x + i), s0);
        float sum = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        for (; i < k; i++) sum += odllm_bf16_to_f32(row[i]) * x[i];
        y[j] = sum;
    }
}

void odllm_avx2_f16_to_f32(const uint16_t * src, float * dst, int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, load_f16x8(src + i));
    for (; i < count; i++) dst[i] = _cvtsh_ss(src[i]);
}

void odllm_avx2_bf16_to_f32(const uint16_t * src, float * dst, int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, load_bf16x8(src + i));
    for (; i < count; i++) dst[i] = odllm_bf16_to_f32(src[i]);
}

/* ---- Integer paths: int8 activations times int8/int4 weights, as llama.cpp's AVX2 vec_dot. ---- */

void odllm_avx2_quantize_act(const float * x, int64_t k, int8_t * q, float * d) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    /* packs interleave 128-bit lanes; this restores the element order. */
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < k / ODLLM_QK; b++) {
        const float * xb = x + b * ODLLM_QK;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 amax = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                    _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float db = _mm_cvtss_f32(m4) / 127.0f;
        const float idb = db != 0.0f ? 1.0f / db : 0.0f;
        d[b] = db;
        const __m256 id = _mm256_set1_ps(idb);
#define ODLLM_NEAREST (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
        __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, id), ODLLM_NEAREST));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, id), ODLLM_NEAREST));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, id), ODLLM_NEAREST));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, id), ODLLM_NEAREST));
#undef ODLLM_NEAREST
        __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        _mm256_storeu_si256((__m256i *)(q + b * ODLLM_QK), _mm256_permutevar8x32_epi32(packed, perm));
    }
}

#endif /* !ODLLM_X86_VNNI */

/*
 * The 8 lanes of kernels.h's contract for one block: lane l = sum of w·x over values 4l..4l+3, as floats (exact).
 * Both instructions want unsigned·signed, so |w| meets x carrying w's sign; no saturation: |x| <= 127 by
 * construction, so a maddubs pair sums to at most 2·128·127 < 2^15 (and vpdpbusd does not saturate at all).
 */
static inline __m256 lanes_i8(__m256i w, __m256i x) {
    const __m256i aw = _mm256_sign_epi8(w, w), sx = _mm256_sign_epi8(x, w);
#if ODLLM_X86_VNNI
    return _mm256_cvtepi32_ps(_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), aw, sx));
#else
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1)));
#endif
}

/*
 * Q4_0 without unpacking to signed bytes: the nibbles u = w + 8 are already unsigned, so
 * lane = sum(u·x) - 8·sum(x), the second term (bias) computed once per activation block.
 */
static inline __m256i q4_bias(__m256i x) {
#if ODLLM_X86_VNNI
    return _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), x));
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(8), x), _mm256_set1_epi16(1));
#endif
}

static inline __m256 lanes_u4(__m256i u, __m256i x, __m256i bias) {
#if ODLLM_X86_VNNI
    return _mm256_cvtepi32_ps(_mm256_dpbusd_avx_epi32(bias, u, x)); /* bias holds -8·sum(x) here */
#else
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)), bias));
#endif
}

enum { W_Q8_0, W_Q4_0, W_I8 };

typedef struct qrows {
    const uint8_t * base;      /* row 0 */
    int64_t stride;            /* bytes per row */
    int64_t rows;
    const uint8_t * scales;    /* int8: the row-scale table */
} qrows;

static inline const uint8_t * block_at(int kind, const qrows * w, int64_t r, int64_t b) {
    const int64_t bytes = kind == W_Q8_0 ? ODLLM_Q8_0_BYTES : kind == W_Q4_0 ? ODLLM_Q4_0_BYTES : ODLLM_QK;
    return w->base + r * w->stride + b * bytes;
}

/* Block b of weight row r as 32 bytes: signed values (Q8_0, int8) or Q4_0's raw nibbles 0..15. */
static ODLLM_ALWAYS_INLINE __m256i load_w(int kind, const uint8_t * block) {
    if (kind == W_Q8_0) return _mm256_loadu_si256((const __m256i *)(block + 2));
    if (kind == W_Q4_0) {
        const __m128i packed = _mm_loadu_si128((const __m128i *)(block + 2));
        /* Low nibbles are values 0..15, high nibbles 16..31: one shift puts them in the two 128-bit halves. */
        const __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
        return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
    }
    return _mm256_loadu_si256((const __m256i *)block);
}

/*
 * MR activation rows against NR weight rows: each weight block is loaded (and for q4 unpacked) once per MR
 * activation rows, each activation block once per NR weight rows, and the NR block scales are converted together.
 * One 8-lane accumulator per output and hsum's order make this exactly kernels.h's contract.
 */
static ODLLM_ALWAYS_INLINE void tile_q(int kind, int MR, int NR, const int8_t * xq, const float * xd,
                                                         int64_t k, const qrows * w, int64_t j, float * y, int64_t ldy) {
    const int64_t nb = k / ODLLM_QK;
    /*
     * Decode streams each weight once, four rows of a few KB at a time: too short for the hardware prefetcher to
     * get ahead, so the core stalls on memory. Touching the next tile's rows while computing this one doubled one
     * thread's rate on a 16384x2048 matrix here (bench_matmul, best of 40: Q4_0 5.8 -> 12.0 GB/s, Q8_0 8.1 -> 14.9).
     */
    const int prefetch = MR == 1 && NR == 4 && j + 2 * NR <= w->rows;
    __m256 acc[2][4];
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) acc[i][r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i xv[2], bias[2];
        __m128 dx[2];
        for (int i = 0; i < MR; i++) {
            xv[i] = _mm256_loadu_si256((const __m256i *)(xq + i * k + b * ODLLM_QK));
            dx[i] = _mm_set1_ps(xd[i * nb + b]);
            if (kind == W_Q4_0) bias[i] = q4_bias(xv[i]);
        }
        const uint8_t * blocks[4];
        for (int r = 0; r < NR; r++) blocks[r] = block_at(kind, w, j + r, b);
        if (prefetch)
            for (int r = 0; r < NR; r++) _mm_prefetch((const char *)(blocks[r] + NR * w->stride), _MM_HINT_T0);
        /* c = dw·dx for all NR rows at once: the same f32 products as one at a time. int8: c = dx. */
        __m128 dw = _mm_set1_ps(1.0f);
        if (kind != W_I8) {
            /* Packed in a general register: no immediate lane index, and one move into the vector unit. */
            uint64_t halves = 0;
            for (int r = 0; r < NR; r++) halves |= (uint64_t)odllm_load_u16(blocks[r]) << (16 * r);
            dw = _mm_cvtph_ps(_mm_cvtsi64_si128((long long)halves));
        }
        for (int r = 0; r < NR; r++) {
            const __m256i wv = load_w(kind, blocks[r]);
            for (int i = 0; i < MR; i++) {
                const __m128 c4 = kind == W_I8 ? dx[i] : _mm_mul_ps(dw, dx[i]);
                const __m256 c = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(c4), _mm256_set1_epi32(r));
                const __m256 lanes = kind == W_Q4_0 ? lanes_u4(wv, xv[i], bias[i]) : lanes_i8(wv, xv[i]);
                acc[i][r] = _mm256_fmadd_ps(lanes, c, acc[i][r]);
            }
        }
    }
    for (int r = 0; r < NR; r++) {
        const float s = kind == W_I8 ? odllm_load_f32(w->scales + (j + r) * 4) : 1.0f;
        for (int i = 0; i < MR; i++) y[i * ldy + r] = kind == W_I8 ? hsum(acc[i][r]) * s : hsum(acc[i][r]);
    }
}

static ODLLM_ALWAYS_INLINE void gemm_q(int kind, const int8_t * xq, const float * xd, int64_t m,
                                                         const qrows * w, int64_t n, int64_t k, float * y, int64_t ldy) {
    const int64_t nb = k / ODLLM_QK;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        int64_t i = 0;
        for (; i + 2 <= m; i += 2) tile_q(kind, 2, 4, xq + i * k, xd + i * nb, k, w, j, y + i * ldy + j, ldy);
        if (i < m) tile_q(kind, 1, 4, xq + i * k, xd + i * nb, k, w, j, y + i * ldy + j, ldy);
    }
    for (; j < n; j++) {
        int64_t i = 0;
        for (; i + 2 <= m; i += 2) tile_q(kind, 2, 1, xq + i * k, xd + i * nb, k, w, j, y + i * ldy + j, ldy);
        if (i < m) tile_q(kind, 1, 1, xq + i * k, xd + i * nb, k, w, j, y + i * ldy + j, ldy);
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

#if ODLLM_X86_VNNI
const odllm_kernel_table odllm_kernels_avx2_vnni = {
    .name = "avx2-vnni",
#else
const odllm_kernel_table odllm_kernels_avx2 = {
    .name = "avx2",
#endif
    .gemm_f32 = odllm_avx2_gemm_f32,
    .gemv_f16 = odllm_avx2_gemv_f16,
    .gemv_bf16 = odllm_avx2_gemv_bf16,
    .f16_to_f32 = odllm_avx2_f16_to_f32,
    .bf16_to_f32 = odllm_avx2_bf16_to_f32,
    .quantize_act = odllm_avx2_quantize_act,
    .gemm_q8_0 = gemm_q8_0,
    .gemm_q4_0 = gemm_q4_0,
    .gemm_i8 = gemm_i8,
    .ops = &odllm_ops_avx2,
    .attend_f32 = odllm_avx2_attend_f32,
    .attend_f16 = odllm_avx2_attend_f16,
};
