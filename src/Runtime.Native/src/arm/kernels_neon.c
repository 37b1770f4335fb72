/*
 * AArch64 Advanced SIMD kernels. Advanced SIMD (with f16 <-> f32 conversion) is mandatory on
 * AArch64, so this file needs no extra target flags; dotprod/I8MM kernels come with the
 * quantized types.
 */
#include <arm_neon.h>

#include "../kernels.h"

static inline float32x4_t load_f16x4(const uint16_t * p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

static inline float32x4_t load_bf16x4(const uint16_t * p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

static float dot_f32(const float * a, const float * b, int64_t k) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= k; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < k; i++) sum += a[i] * b[i];
    return sum;
}

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
        for (int64_t i = 0; i < m; i++) y[i * ldy + j] = dot_f32(x + i * ldx, w + j * ldw, k);
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

const odllm_kernel_table odllm_kernels_neon = {
    .name = "neon",
    .gemm_f32 = gemm_f32,
    .gemv_f16 = gemv_f16,
    .gemv_bf16 = gemv_bf16,
    .f16_to_f32 = f16_to_f32,
    .bf16_to_f32 = bf16_to_f32,
    .quantize_act = odllm_ref_quantize_act,
    .gemm_q8_0 = odllm_ref_gemm_q8_0,
    .gemm_q4_0 = odllm_ref_gemm_q4_0,
    .gemm_i8 = odllm_ref_gemm_i8,
};
