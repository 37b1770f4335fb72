/* The attend kernel for AArch64 Advanced SIMD (mandatory on AArch64, f16 conversion included: no extra flags). */
#include <arm_neon.h>
#include <math.h>

#include "../kernels.h"
#include "simd_neon.h"

static inline float attn_dot_f32(const float * a, const float * b, int64_t d) { return neon_dot_f32(a, b, d); }

static inline float attn_dot_f16(const float * a, const uint16_t * b, int64_t d) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), load_f16x4(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), load_f16x4(b + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), load_f16x4(b + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), load_f16x4(b + i + 12));
    }
    for (; i + 4 <= d; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), load_f16x4(b + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < d; i++) sum += a[i] * odllm_f16_to_f32(b[i]);
    return sum;
}

/* The four sums of s0..s3, in that order. */
static inline float32x4_t hsum4x4(float32x4_t s0, float32x4_t s1, float32x4_t s2, float32x4_t s3) {
    return vpaddq_f32(vpaddq_f32(s0, s1), vpaddq_f32(s2, s3));
}

static inline void attn_dot4_f32(const float * a, const float * b, int64_t ldb, int64_t d, float * out) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 4 <= d; i += 4) {
        const float32x4_t x = vld1q_f32(a + i);
        s0 = vfmaq_f32(s0, x, vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, x, vld1q_f32(b + ldb + i));
        s2 = vfmaq_f32(s2, x, vld1q_f32(b + 2 * ldb + i));
        s3 = vfmaq_f32(s3, x, vld1q_f32(b + 3 * ldb + i));
    }
    float tail[4] = { 0, 0, 0, 0 };
    for (; i < d; i++)
        for (int r = 0; r < 4; r++) tail[r] += a[i] * b[r * ldb + i];
    vst1q_f32(out, vaddq_f32(hsum4x4(s0, s1, s2, s3), vld1q_f32(tail)));
}

static inline void attn_dot4_f16(const float * a, const uint16_t * b, int64_t ldb, int64_t d, float * out) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0), s2 = vdupq_n_f32(0), s3 = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 4 <= d; i += 4) {
        const float32x4_t x = vld1q_f32(a + i);
        s0 = vfmaq_f32(s0, x, load_f16x4(b + i));
        s1 = vfmaq_f32(s1, x, load_f16x4(b + ldb + i));
        s2 = vfmaq_f32(s2, x, load_f16x4(b + 2 * ldb + i));
        s3 = vfmaq_f32(s3, x, load_f16x4(b + 3 * ldb + i));
    }
    float tail[4] = { 0, 0, 0, 0 };
    for (; i < d; i++)
        for (int r = 0; r < 4; r++) tail[r] += a[i] * odllm_f16_to_f32(b[r * ldb + i]);
    vst1q_f32(out, vaddq_f32(hsum4x4(s0, s1, s2, s3), vld1q_f32(tail)));
}

static inline void attn_axpy4_f32(float * y, const float * a, const float * x, int64_t ldx, int64_t d) {
    int64_t i = 0;
    for (; i + 4 <= d; i += 4) {
        float32x4_t acc = vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a[0]);
        acc = vfmaq_n_f32(acc, vld1q_f32(x + ldx + i), a[1]);
        acc = vfmaq_n_f32(acc, vld1q_f32(x + 2 * ldx + i), a[2]);
        vst1q_f32(y + i, vfmaq_n_f32(acc, vld1q_f32(x + 3 * ldx + i), a[3]));
    }
    for (; i < d; i++) y[i] = y[i] + a[0] * x[i] + a[1] * x[ldx + i] + a[2] * x[2 * ldx + i] + a[3] * x[3 * ldx + i];
}

static inline void attn_axpy4_f16(float * y, const float * a, const uint16_t * x, int64_t ldx, int64_t d) {
    int64_t i = 0;
    for (; i + 4 <= d; i += 4) {
        float32x4_t acc = vfmaq_n_f32(vld1q_f32(y + i), load_f16x4(x + i), a[0]);
        acc = vfmaq_n_f32(acc, load_f16x4(x + ldx + i), a[1]);
        acc = vfmaq_n_f32(acc, load_f16x4(x + 2 * ldx + i), a[2]);
        vst1q_f32(y + i, vfmaq_n_f32(acc, load_f16x4(x + 3 * ldx + i), a[3]));
    }
    for (; i < d; i++)
        y[i] = y[i] + a[0] * odllm_f16_to_f32(x[i]) + a[1] * odllm_f16_to_f32(x[ldx + i])
             + a[2] * odllm_f16_to_f32(x[2 * ldx + i]) + a[3] * odllm_f16_to_f32(x[3 * ldx + i]);
}

static inline void attn_axpy_f32(float * y, float a, const float * x, int64_t d) {
    int64_t i = 0;
    for (; i + 4 <= d; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
    for (; i < d; i++) y[i] += a * x[i];
}

static inline void attn_axpy_f16(float * y, float a, const uint16_t * x, int64_t d) {
    int64_t i = 0;
    for (; i + 4 <= d; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), load_f16x4(x + i), a));
    for (; i < d; i++) y[i] += a * odllm_f16_to_f32(x[i]);
}

static inline void attn_decode_f16(const uint16_t * src, float * dst, int64_t d) {
    int64_t i = 0;
    for (; i + 4 <= d; i += 4) vst1q_f32(dst + i, load_f16x4(src + i));
    for (; i < d; i++) dst[i] = odllm_f16_to_f32(src[i]);
}

static inline void attn_scale(float * y, float a, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(y + i), a));
    for (; i < n; i++) y[i] *= a;
}

/* exp(x) for x <= 0: the same Cephes range reduction and polynomial as the AVX2 version (see there). */
static inline float32x4_t exp_nonpositive(float32x4_t x) {
    x = vmaxq_f32(x, vdupq_n_f32(-87.33654f));
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(bits));
}

static inline float attn_exp_sum(float * s, int64_t n, float max) {
    const float32x4_t vmax = vdupq_n_f32(max);
    float32x4_t acc = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t e = exp_nonpositive(vsubq_f32(vld1q_f32(s + i), vmax));
        vst1q_f32(s + i, e);
        acc = vaddq_f32(acc, e);
    }
    float sum = vaddvq_f32(acc);
    for (; i < n; i++) {
        s[i] = expf(s[i] - max);
        sum += s[i];
    }
    return sum;
}

#include "../attention_kernel.h"

ATTN_DEFINE(odllm_neon)
