/* Scalar reference of the attend kernel: the oracle the SIMD versions are tested against. */
#include <math.h>

#include "../kernels.h"

static inline float attn_dot_f32(const float * a, const float * b, int64_t d) {
    float sum = 0.0f;
    for (int64_t i = 0; i < d; i++) sum += a[i] * b[i];
    return sum;
}

static inline float attn_dot_f16(const float * a, const uint16_t * b, int64_t d) {
    float sum = 0.0f;
    for (int64_t i = 0; i < d; i++) sum += a[i] * odllm_f16_to_f32(b[i]);
    return sum;
}

static inline void attn_dot4_f32(const float * a, const float * b, int64_t ldb, int64_t d, float * out) {
    for (int r = 0; r < 4; r++) out[r] = attn_dot_f32(a, b + r * ldb, d);
}

static inline void attn_dot4_f16(const float * a, const uint16_t * b, int64_t ldb, int64_t d, float * out) {
    for (int r = 0; r < 4; r++) out[r] = attn_dot_f16(a, b + r * ldb, d);
}

static inline void attn_axpy_f32(float * y, float a, const float * x, int64_t d) {
    for (int64_t i = 0; i < d; i++) y[i] += a * x[i];
}

static inline void attn_axpy_f16(float * y, float a, const uint16_t * x, int64_t d) {
    for (int64_t i = 0; i < d; i++) y[i] += a * odllm_f16_to_f32(x[i]);
}

static inline void attn_axpy4_f32(float * y, const float * a, const float * x, int64_t ldx, int64_t d) {
    for (int r = 0; r < 4; r++) attn_axpy_f32(y, a[r], x + r * ldx, d);
}

static inline void attn_axpy4_f16(float * y, const float * a, const uint16_t * x, int64_t ldx, int64_t d) {
    for (int r = 0; r < 4; r++) attn_axpy_f16(y, a[r], x + r * ldx, d);
}

static inline void attn_decode_f16(const uint16_t * src, float * dst, int64_t d) {
    for (int64_t i = 0; i < d; i++) dst[i] = odllm_f16_to_f32(src[i]);
}

static inline void attn_scale(float * y, float a, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= a;
}

static inline float attn_exp_sum(float * s, int64_t n, float max) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        s[i] = expf(s[i] - max);
        sum += s[i];
    }
    return sum;
}

#include "../attention_kernel.h"

ATTN_DEFINE(odllm_ref)
