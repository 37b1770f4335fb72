/*
 * AArch64 Advanced SIMD kernels. Advanced SIMD (with f16 <-> f32 conversion) is mandatory on
 * AArch64, so this file needs no extra target flags. kernels_neon_dotprod.c compiles it again
 * with ODLLM_NEON_DOT=1 and +dotprod, where the integer dot products use sdot, and kernels_neon_i8mm.c
 * with ODLLM_NEON_I8MM=1 and +i8mm as well, where prefill's use smmla.
 */
#ifndef ODLLM_NEON_DOT
#  define ODLLM_NEON_DOT 0
#endif
#ifndef ODLLM_NEON_I8MM
#  define ODLLM_NEON_I8MM 0
#endif

#include <arm_neon.h>
#include <math.h>

#include "../kernels.h"
#include "simd_neon.h"

/* Two x rows against four w rows: 8 accumulators, 6 loads per 8 FMAs. */
static void tile_2x4(const float * x, int64_t ldx, const float * w, int64_t ldw, int64_t k,
                     float * y, int64_t ldy) {
    const float *x0 = x, *x1 = x + ldx;
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
    float32x4_t a00 = vdupq_n_f32(0), a01 = vdupq_n_f32(0), a02 = vdupq_n_f32(0), a03 = vdupq_n_f32(0);
    float32x4_t a10 = vdupq_n_f32(0), a11 = vdupq_n_f32(0), a12 = vdupq_n_f32(0), a13 = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 4 <= k; i += 4) {
        float32x4_t v0 = vld1q_f32(x0 + i), v1 = vld1q_f32(x1 + i), b;
        b = vld1q_f32(w0 + i); a00 = vfmaq_f32(a00, v0, b); a10 = vfmaq_f32(a10, v1, b);
        b = vld1q_f32(w1 + i); a01 = vfmaq_f32(a01, v0, b); a11 = vfmaq_f32(a11, v1, b);
        b = vld1q_f32(w2 + i); a02 = vfmaq_f32(a02, v0, b); a12 = vfmaq_f32(a12, v1, b);
        b = vld1q_f32(w3 + i); a03 = vfmaq_f32(a03, v0, b); a13 = vfmaq_f32(a13, v1, b);
    }
    float r[8] = {
        vaddvq_f32(a00), vaddvq_f32(a01), vaddvq_f32(a02), vaddvq_f32(a03),
        vaddvq_f32(a10), vaddvq_f32(a11), vaddvq_f32(a12), vaddvq_f32(a13),
    };
    for (; i < k; i++) {
        r[0] += x0[i] * w0[i]; r[1] += x0[i] * w1[i]; r[2] += x0[i] * w2[i]; r[3] += x0[i] * w3[i];
        r[4] += x1[i] * w0[i]; r[5] += x1[i] * w1[i]; r[6] += x1[i] * w2[i]; r[7] += x1[i] * w3[i];
    }
    y[0] = r[0]; y[1] = r[1]; y[2] = r[2]; y[3] = r[3];
    y[ldy + 0] = r[4]; y[ldy + 1] = r[5]; y[ldy + 2] = r[6]; y[ldy + 3] = r[7];
}

static void tile_1x4(const float * x, const float * w, int64_t ldw, int64_t k, float * y) {
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
    float32x4_t a0 = vdupq_n_f32(0), a1 = vdupq_n_f32(0), a2 = vdupq_n_f32(0), a3 = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 4 <= k; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        a0 = vfmaq_f32(a0, v, vld1q_f32(w0 + i));
        a1 = vfmaq_f32(a1, v, vld1q_f32(w1 + i));
        a2 = vfmaq_f32(a2, v, vld1q_f32(w2 + i));
        a3 = vfmaq_f32(a3, v, vld1q_f32(w3 + i));
    }
    float r0 = vaddvq_f32(a0), r1 = vaddvq_f32(a1), r2 = vaddvq_f32(a2), r3 = vaddvq_f32(a3);
    for (; i < k; i++) { r0 += x[i] * w0[i]; r1 += x[i] * w1[i]; r2 += x[i] * w2[i]; r3 += x[i] * w3[i]; }
    y[0] = r0; y[1] = r1; y[2] = r2; y[3] = r3;
}

/* Weight rows outermost: a group of four stays in cache while every x row passes over it. */
static void gemm_f32(const float * x, int64_t ldx, int64_t m, const float * w, int64_t ldw,
                     int64_t n, int64_t k, float * y, int64_t ldy) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const float * wj = w + j * ldw;
        int64_t i = 0;
        for (; i + 2 <= m; i += 2) tile_2x4(x + i * ldx, ldx, wj, ldw, k, y + i * ldy + j, ldy);
        if (i < m) tile_1x4(x + i * ldx, wj, ldw, k, y + i * ldy + j);
    }
    for (; j < n; j++)
        for (int64_t i = 0; i < m; i++) y[i * ldy + j] = neon_dot_f32(x + i * ldx, w + j * ldw, k);
}

static void gemv_f16(const float * x, const uint16_t * w, int64_t ldw, int64_t n, int64_t k, float * y) {
    for (int64_t j = 0; j < n; j++) {
        const uint16_t * row = w + j * ldw;
        float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
        int64_t i = 0;
        for (; i + 16 <= k; i += 16) {
            s0 = vfmaq_f32(s0, load_f16x4(row + i), vld1q_f32(x + i));
            s1 = vfmaq_f32(s1, load_f16x4(row + i + 4), vld1q_f32(x + i + 4));
            s2 = vfmaq_f32(s2, load_f16x4(row + i + 8), vld1q_f32(x + i + 8));
            s3 = vfmaq_f32(s3, load_f16x4(row + i + 12), vld1q_f32(x + i + 12));
        }
        for (; i + 4 <= k; i += 4) s0 = vfmaq_f32(s0, load_f16x4(row + i), vld1q_f32(x + i));
        float sum = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
        for (; i < k; i++) sum += odllm_f16_to_f32(row[i]) * x[i];
        y[j] = sum;
    }
}

static void gemv_bf16(const float * x, const uint16_t * w, int64_t ldw, int64_t n, int64_t k, float * y) {
    for (int64_t j = 0; j < n; j++) {
        const uint16_t * row = w + j * ldw;
        float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
        int64_t i = 0;
        for (; i + 16 <= k; i += 16) {
            s0 = vfmaq_f32(s0, load_bf16x4(row + i), vld1q_f32(x + i));
            s1 = vfmaq_f32(s1, load_bf16x4(row + i + 4), vld1q_f32(x + i + 4));
            s2 = vfmaq_f32(s2, load_bf16x4(row + i + 8), vld1q_f32(x + i + 8));
            s3 = vfmaq_f32(s3, load_bf16x4(row + i + 12), vld1q_f32(x + i + 12));
        }
        for (; i + 4 <= k; i += 4) s0 = vfmaq_f32(s0, load_bf16x4(row + i), vld1q_f32(x + i));
        float sum = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
        for (; i < k; i++) sum += odllm_bf16_to_f32(row[i]) * x[i];
        y[j] = sum;
    }
}

static void f16_to_f32(const uint16_t * src, float * dst, int64_t count) {
    int64_t i = 0;
    for (; i + 4 <= count; i += 4) vst1q_f32(dst + i, load_f16x4(src + i));
    for (; i < count; i++) dst[i] = odllm_f16_to_f32(src[i]);
}

static void bf16_to_f32(const uint16_t * src, float * dst, int64_t count) {
    int64_t i = 0;
    for (; i + 4 <= count; i += 4) vst1q_f32(dst + i, load_bf16x4(src + i));
    for (; i < count; i++) dst[i] = odllm_bf16_to_f32(src[i]);
}

/* ---- Integer paths, to kernels.h's contract: lanes of 4 products, fused multiply-add, fixed reduction. ---- */

static void quantize_act(const float * x, int64_t k, int8_t * q, float * d) {
    for (int64_t b = 0; b < k / ODLLM_QK; b++) {
        const float * xb = x + b * ODLLM_QK;
        float32x4_t v[8];
        for (int t = 0; t < 8; t++) v[t] = vld1q_f32(xb + 4 * t);
        float32x4_t amax = vabsq_f32(v[0]);
        for (int t = 1; t < 8; t++) amax = vmaxq_f32(amax, vabsq_f32(v[t]));
        const float db = vmaxvq_f32(amax) / 127.0f;
        const float idb = db != 0.0f ? 1.0f / db : 0.0f;
        d[b] = db;
        int16x4_t h[8];
        /* fcvtns: round to nearest, ties to even, as the contract says. */
        for (int t = 0; t < 8; t++) h[t] = vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[t], idb)));
        vst1q_s8(q + b * ODLLM_QK, vcombine_s8(vqmovn_s16(vcombine_s16(h[0], h[1])), vqmovn_s16(vcombine_s16(h[2], h[3]))));
        vst1q_s8(q + b * ODLLM_QK + 16, vcombine_s8(vqmovn_s16(vcombine_s16(h[4], h[5])), vqmovn_s16(vcombine_s16(h[6], h[7]))));
    }
}

/* Four lanes, each the sum of four consecutive products. */
static inline int32x4_t dot4(int8x16_t w, int8x16_t x) {
#if ODLLM_NEON_DOT
    return vdotq_s32(vdupq_n_s32(0), w, x);
#else
    const int16x8_t lo = vmull_s8(vget_low_s8(w), vget_low_s8(x));
    const int16x8_t hi = vmull_s8(vget_high_s8(w), vget_high_s8(x));
    return vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi));
#endif
}

enum { W_Q8_0, W_Q4_0, W_I8 };

typedef struct qrows {
    const uint8_t * base;
    int64_t stride;
    const uint8_t * scales;
} qrows;

static inline float load_half(const uint8_t * p) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(odllm_load_u16(p)))), 0);
}

/* Block b of weight row r as values 0..15 and 16..31, and its scale (int8: 1, the row scale comes last). */
static ODLLM_ALWAYS_INLINE void load_w(int kind, const qrows * w, int64_t r, int64_t b,
                                                         int8x16_t * lo, int8x16_t * hi, float * scale) {
    const uint8_t * row = w->base + r * w->stride;
    if (kind == W_Q8_0) {
        const uint8_t * block = row + b * ODLLM_Q8_0_BYTES;
        *scale = load_half(block);
        *lo = vld1q_s8((const int8_t *)block + 2);
        *hi = vld1q_s8((const int8_t *)block + 18);
    } else if (kind == W_Q4_0) {
        const uint8_t * block = row + b * ODLLM_Q4_0_BYTES;
        *scale = load_half(block);
        const uint8x16_t packed = vld1q_u8(block + 2);
        const int8x16_t eight = vdupq_n_s8(8);
        *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0F))), eight);
        *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(packed, 4)), eight);
    } else {
        *scale = 1.0f;
        *lo = vld1q_s8((const int8_t *)row + b * ODLLM_QK);
        *hi = vld1q_s8((const int8_t *)row + b * ODLLM_QK + 16);
    }
}

static ODLLM_ALWAYS_INLINE void tile_q(int kind, int MR, int NR, const int8_t * xq, const float * xd,
                                                         int64_t k, const qrows * w, int64_t j, float * y, int64_t ldy) {
    const int64_t nb = k / ODLLM_QK;
    float32x4_t acc_lo[2][4], acc_hi[2][4];
    for (int i = 0; i < MR; i++)
        for (int r = 0; r < NR; r++) acc_lo[i][r] = acc_hi[i][r] = vdupq_n_f32(0);
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t x_lo[2], x_hi[2];
        float dx[2];
        for (int i = 0; i < MR; i++) {
            x_lo[i] = vld1q_s8(xq + i * k + b * ODLLM_QK);
            x_hi[i] = vld1q_s8(xq + i * k + b * ODLLM_QK + 16);
            dx[i] = xd[i * nb + b];
        }
        for (int r = 0; r < NR; r++) {
            int8x16_t w_lo, w_hi;
            float dw;
            load_w(kind, w, j + r, b, &w_lo, &w_hi, &dw);
            for (int i = 0; i < MR; i++) {
                const float c = dw * dx[i];
                acc_lo[i][r] = vfmaq_n_f32(acc_lo[i][r], vcvtq_f32_s32(dot4(w_lo, x_lo[i])), c);
                acc_hi[i][r] = vfmaq_n_f32(acc_hi[i][r], vcvtq_f32_s32(dot4(w_hi, x_hi[i])), c);
            }
        }
    }
    for (int r = 0; r < NR; r++) {
        const float s = kind == W_I8 ? odllm_load_f32(w->scales + (j + r) * 4) : 1.0f;
        for (int i = 0; i < MR; i++) {
            const float32x4_t sum = vaddq_f32(acc_lo[i][r], acc_hi[i][r]);
            const float32x2_t half = vadd_f32(vget_low_f32(sum), vget_high_f32(sum));
            const float v = vget_lane_f32(half, 0) + vget_lane_f32(half, 1);
            y[i * ldy + r] = kind == W_I8 ? v * s : v;
        }
    }
}

#if ODLLM_NEON_I8MM
/*
 * smmla multiplies a 2x8 int8 tile by an 8x2 one: two activation rows against two weight rows, twice sdot's products
 * per instruction. Its sums span 8 values, from which the 4-value lanes of kernels.h's contract cannot be recovered,
 * so calls with m >= 2 follow kernels.h's block-dot contract instead (one exact integer dot per block and output).
 */

/* [a[0..7], b[0..7]] and [a[8..15], b[8..15]]: two rows' 8-value chunks side by side, smmla's operand layout. */
static inline int8x16_t low_halves(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}

static inline int8x16_t high_halves(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}

/* The exact block dots [x0·w0, x0·w1, x1·w0, x1·w1] of two activation rows (as chunk pairs) and two weight rows. */
static inline int32x4_t block_dots_2x2(const int8x16_t xa[4], int8x16_t w0_lo, int8x16_t w0_hi,
                                       int8x16_t w1_lo, int8x16_t w1_hi) {
    int32x4_t s = vmmlaq_s32(vdupq_n_s32(0), xa[0], low_halves(w0_lo, w1_lo));
    s = vmmlaq_s32(s, xa[1], high_halves(w0_lo, w1_lo));
    s = vmmlaq_s32(s, xa[2], low_halves(w0_hi, w1_hi));
    return vmmlaq_s32(s, xa[3], high_halves(w0_hi, w1_hi));
}

/* One output by the block-dot contract, for the rows and columns left over by the 2x4 tiles. */
static ODLLM_ALWAYS_INLINE float output_blockdot(int kind, const int8_t * xq, const float * xd, int64_t nb,
                                                 const qrows * w, int64_t r) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t w_lo, w_hi;
        float dw;
        load_w(kind, w, r, b, &w_lo, &w_hi, &dw);
        const int32x4_t lanes = vaddq_s32(dot4(w_lo, vld1q_s8(xq + b * ODLLM_QK)), dot4(w_hi, vld1q_s8(xq + b * ODLLM_QK + 16)));
        acc = fmaf((float)vaddvq_s32(lanes), dw * xd[b], acc);
    }
    return kind == W_I8 ? acc * odllm_load_f32(w->scales + r * 4) : acc;
}

/* Two activation rows against four weight rows (two smmla column pairs). */
static ODLLM_ALWAYS_INLINE void tile_mmla(int kind, const int8_t * xq, const float * xd, int64_t k,
                                          const qrows * w, int64_t j, float * y, int64_t ldy) {
    const int64_t nb = k / ODLLM_QK;
    float32x4_t acc[2] = { vdupq_n_f32(0), vdupq_n_f32(0) };
    for (int64_t b = 0; b < nb; b++) {
        const int8x16_t x0_lo = vld1q_s8(xq + b * ODLLM_QK), x0_hi = vld1q_s8(xq + b * ODLLM_QK + 16);
        const int8x16_t x1_lo = vld1q_s8(xq + k + b * ODLLM_QK), x1_hi = vld1q_s8(xq + k + b * ODLLM_QK + 16);
        const int8x16_t xa[4] = { low_halves(x0_lo, x1_lo), high_halves(x0_lo, x1_lo),
                                  low_halves(x0_hi, x1_hi), high_halves(x0_hi, x1_hi) };
        const float32x4_t dx = { xd[b], xd[b], xd[nb + b], xd[nb + b] };
        for (int p = 0; p < 2; p++) {
            int8x16_t lo0, hi0, lo1, hi1;
            float dw0, dw1;
            load_w(kind, w, j + 2 * p, b, &lo0, &hi0, &dw0);
            load_w(kind, w, j + 2 * p + 1, b, &lo1, &hi1, &dw1);
            const float32x4_t dw = { dw0, dw1, dw0, dw1 };
            const float32x4_t dots = vcvtq_f32_s32(block_dots_2x2(xa, lo0, hi0, lo1, hi1));
            acc[p] = vfmaq_f32(acc[p], dots, vmulq_f32(dw, dx));
        }
    }
    for (int p = 0; p < 2; p++) {
        float out[4];
        vst1q_f32(out, acc[p]);
        for (int c = 0; c < 2; c++) {
            const float s = kind == W_I8 ? odllm_load_f32(w->scales + (j + 2 * p + c) * 4) : 1.0f;
            y[2 * p + c] = kind == W_I8 ? out[c] * s : out[c];
            y[ldy + 2 * p + c] = kind == W_I8 ? out[2 + c] * s : out[2 + c];
        }
    }
}

static ODLLM_ALWAYS_INLINE void gemm_q_mmla(int kind, const int8_t * xq, const float * xd, int64_t m,
                                            const qrows * w, int64_t n, int64_t k, float * y, int64_t ldy) {
    const int64_t nb = k / ODLLM_QK;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        int64_t i = 0;
        for (; i + 2 <= m; i += 2) tile_mmla(kind, xq + i * k, xd + i * nb, k, w, j, y + i * ldy + j, ldy);
        for (; i < m; i++)
            for (int64_t r = j; r < j + 4; r++) y[i * ldy + r] = output_blockdot(kind, xq + i * k, xd + i * nb, nb, w, r);
    }
    for (; j < n; j++)
        for (int64_t i = 0; i < m; i++) y[i * ldy + j] = output_blockdot(kind, xq + i * k, xd + i * nb, nb, w, j);
}
#endif

static ODLLM_ALWAYS_INLINE void gemm_q(int kind, const int8_t * xq, const float * xd, int64_t m,
                                                         const qrows * w, int64_t n, int64_t k, float * y, int64_t ldy) {
#if ODLLM_NEON_I8MM
    if (m >= 2) {
        gemm_q_mmla(kind, xq, xd, m, w, n, k, y, ldy);
        return;
    }
#endif
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
    const qrows rows = { w, k / ODLLM_QK * ODLLM_Q8_0_BYTES, NULL };
    gemm_q(W_Q8_0, xq, xd, m, &rows, n, k, y, ldy);
}

static void gemm_q4_0(const int8_t * xq, const float * xd, int64_t m, const uint8_t * w, int64_t n, int64_t k,
                      float * y, int64_t ldy) {
    const qrows rows = { w, k / ODLLM_QK * ODLLM_Q4_0_BYTES, NULL };
    gemm_q(W_Q4_0, xq, xd, m, &rows, n, k, y, ldy);
}

static void gemm_i8(const int8_t * xq, const float * xd, int64_t m, const int8_t * w, const uint8_t * scales,
                    int64_t n, int64_t k, float * y, int64_t ldy) {
    const qrows rows = { (const uint8_t *)w, k, scales };
    gemm_q(W_I8, xq, xd, m, &rows, n, k, y, ldy);
}

#if ODLLM_NEON_I8MM
const odllm_kernel_table odllm_kernels_neon_i8mm = {
    .name = "neon-i8mm",
#elif ODLLM_NEON_DOT
const odllm_kernel_table odllm_kernels_neon_dotprod = {
    .name = "neon-dotprod",
#else
const odllm_kernel_table odllm_kernels_neon = {
    .name = "neon",
#endif
    .gemm_f32 = gemm_f32,
    .gemv_f16 = gemv_f16,
    .gemv_bf16 = gemv_bf16,
    .f16_to_f32 = f16_to_f32,
    .bf16_to_f32 = bf16_to_f32,
    .quantize_act = quantize_act,
    .gemm_q8_0 = gemm_q8_0,
    .gemm_q4_0 = gemm_q4_0,
    .gemm_i8 = gemm_i8,
    .ops = &odllm_ops_neon,
    .attend_f32 = odllm_neon_attend_f32,
    .attend_f16 = odllm_neon_attend_f16,
};
