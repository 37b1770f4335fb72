/*
 * Scalar reference of the element-wise and row-wise operators: the float contract of kernels.h written
 * one value at a time. The SIMD tables and the managed fallback (ManagedKernels.Ops.cs) follow it to the
 * bit, for the reason the integer kernels do: a quantized model's next activation is a step function of
 * these outputs, so backends that differ in the last ulp would drift apart.
 */
#include <math.h>
#include <string.h>

#include "../kernels.h"

/* The 8 lanes of a row sum, reduced in the fixed order of kernels.h. */
static float reduce_lanes(const float acc[8]) {
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

/* Σ (x − shift)² or Σ x: lane l takes values l, l + 8, …, the row zero-padded to whole groups of 8. */
static float sum_row(const float * x, int64_t dim, int squares, float shift) {
    float acc[8] = { 0 };
    for (int64_t i = 0; i < dim; i += 8)
        for (int l = 0; l < 8; l++) {
            const int in_row = i + l < dim;
            if (squares) {
                const float d = in_row ? x[i + l] - shift : 0.0f;
                acc[l] = fmaf(d, d, acc[l]);
            } else {
                acc[l] = acc[l] + (in_row ? x[i + l] : 0.0f);
            }
        }
    return reduce_lanes(acc);
}

static void rms_norm(const float * x, int64_t dim, const float * w, float w_offset, float eps, float * y) {
    const float inv = 1.0f / sqrtf(sum_row(x, dim, 1, 0.0f) / (float)dim + eps);
    odllm_rms_norm_values(0, x, dim, inv, w, w_offset, y);
}

static void layer_norm(const float * x, int64_t dim, const float * w, const float * b, float eps, float * y) {
    const float mean = sum_row(x, dim, 0, 0.0f) / (float)dim;
    const float inv = 1.0f / sqrtf(sum_row(x, dim, 1, mean) / (float)dim + eps);
    odllm_layer_norm_values(0, x, dim, mean, inv, w, b, y);
}

static void rope(float * x, const float * cos, const float * sin, int64_t half) {
    odllm_rope_values(0, x, cos, sin, half);
}

static float contract_exp(float x) {
    if (x > ODLLM_EXP_MAX) return INFINITY;
    if (isnan(x)) return x;
    x = x < ODLLM_EXP_MIN ? ODLLM_EXP_MIN : x > ODLLM_EXP_MAX ? ODLLM_EXP_MAX : x;
    const float n = nearbyintf(x * ODLLM_LOG2E);
    float r = fmaf(-n, ODLLM_LN2_HI, x);
    r = fmaf(-n, ODLLM_LN2_LO, r);
    float p = ODLLM_EXP_P0;
    p = fmaf(p, r, ODLLM_EXP_P1);
    p = fmaf(p, r, ODLLM_EXP_P2);
    p = fmaf(p, r, ODLLM_EXP_P3);
    p = fmaf(p, r, ODLLM_EXP_P4);
    p = fmaf(p, r, ODLLM_EXP_P5);
    p = fmaf(p, r * r, r);
    p = p + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static float contract_tanh(float x) {
    const float ax = fabsf(x);
    if (ax < ODLLM_TANH_SMALL) {
        const float z = x * x;
        float p = ODLLM_TANH_P0;
        p = fmaf(p, z, ODLLM_TANH_P1);
        p = fmaf(p, z, ODLLM_TANH_P2);
        p = fmaf(p, z, ODLLM_TANH_P3);
        p = fmaf(p, z, ODLLM_TANH_P4);
        return fmaf(p * z, x, x);
    }
    const float e = contract_exp(ax + ax);
    return copysignf(1.0f - 2.0f / (e + 1.0f), x);
}

static float silu(float x) { return x / (1.0f + contract_exp(-x)); }

static float gelu_tanh(float x) {
    const float u = ODLLM_SQRT_2_OVER_PI * fmaf(ODLLM_GELU_CUBIC, (x * x) * x, x);
    return x / (1.0f + contract_exp(-2.0f * u));
}

static float gelu_erf(float x) {
    const float z = fabsf(x) * ODLLM_SQRT_HALF;
    const float t = 1.0f / fmaf(0.5f, z, 1.0f);
    float p = ODLLM_ERFC_P0;
    p = fmaf(p, t, ODLLM_ERFC_P1);
    p = fmaf(p, t, ODLLM_ERFC_P2);
    p = fmaf(p, t, ODLLM_ERFC_P3);
    p = fmaf(p, t, ODLLM_ERFC_P4);
    p = fmaf(p, t, ODLLM_ERFC_P5);
    p = fmaf(p, t, ODLLM_ERFC_P6);
    p = fmaf(p, t, ODLLM_ERFC_P7);
    p = fmaf(p, t, ODLLM_ERFC_P8);
    p = fmaf(p, t, ODLLM_ERFC_P9);
    const float half_erfc = 0.5f * (t * contract_exp(fmaf(-z, z, p)));
    return x * (x < 0.0f ? half_erfc : 1.0f - half_erfc);
}

static float activation(int32_t act, float x) {
    switch (act) {
    case ODLLM_ACT_SILU: return silu(x);
    case ODLLM_ACT_GELU_TANH: return gelu_tanh(x);
    default: return gelu_erf(x);
    }
}

static void activate(int32_t act, const float * x, int64_t count, float * y) {
    for (int64_t i = 0; i < count; i++) y[i] = activation(act, x[i]);
}

static void gated_activate(int32_t act, const float * gate, const float * up, int64_t count, float * y) {
    for (int64_t i = 0; i < count; i++) y[i] = up[i] * activation(act, gate[i]);
}

static void add(const float * a, const float * b, int64_t count, float * y) {
    odllm_add_values(0, a, b, count, y);
}

static void softcap(const float * x, int64_t count, float cap, float * y) {
    for (int64_t i = 0; i < count; i++) y[i] = cap * contract_tanh(x[i] / cap);
}

const odllm_op_kernels odllm_ops_ref = {
    .rms_norm = rms_norm,
    .layer_norm = layer_norm,
    .rope = rope,
    .activate = activate,
    .gated_activate = gated_activate,
    .add = add,
    .softcap = softcap,
};
