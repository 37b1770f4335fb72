/*
 * Element-wise and row-wise operators for AArch64 Advanced SIMD (both NEON tables use them), four values at a
 * time in exactly the float contract of kernels.h, so that they return the scalar reference's bits.
 */
#include <arm_neon.h>
#include <math.h>

#include "../kernels.h"

enum { V = 4 };

static inline float32x4_t splat(float v) { return vdupq_n_f32(v); }

/* fma(a, b, c) = a·b + c, in the argument order of the AVX2 file. */
static inline float32x4_t fmadd(float32x4_t a, float32x4_t b, float32x4_t c) { return vfmaq_f32(c, a, b); }

/* The contract's exp: the clamp keeps 2^n a normal float; above it e^x is +inf, as expf says. NaN passes through. */
static inline float32x4_t exp_ps(float32x4_t x) {
    const uint32x4_t overflow = vcgtq_f32(x, splat(ODLLM_EXP_MAX));
    x = vminq_f32(vmaxq_f32(x, splat(ODLLM_EXP_MIN)), splat(ODLLM_EXP_MAX));
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, splat(ODLLM_LOG2E)));
    float32x4_t r = vfmsq_f32(x, n, splat(ODLLM_LN2_HI));
    r = vfmsq_f32(r, n, splat(ODLLM_LN2_LO));
    float32x4_t p = splat(ODLLM_EXP_P0);
    p = fmadd(p, r, splat(ODLLM_EXP_P1));
    p = fmadd(p, r, splat(ODLLM_EXP_P2));
    p = fmadd(p, r, splat(ODLLM_EXP_P3));
    p = fmadd(p, r, splat(ODLLM_EXP_P4));
    p = fmadd(p, r, splat(ODLLM_EXP_P5));
    p = fmadd(p, vmulq_f32(r, r), r);
    p = vaddq_f32(p, splat(1.0f));
    const int32x4_t scale = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vbslq_f32(overflow, splat(INFINITY), vmulq_f32(p, vreinterpretq_f32_s32(scale)));
}

/* The contract's tanh: the polynomial below 0.625, where 1 − 2/(e^2|x| + 1) would lose the small result's digits. */
static inline float32x4_t tanh_ps(float32x4_t x) {
    const float32x4_t ax = vabsq_f32(x);
    const float32x4_t z = vmulq_f32(x, x);
    float32x4_t p = splat(ODLLM_TANH_P0);
    p = fmadd(p, z, splat(ODLLM_TANH_P1));
    p = fmadd(p, z, splat(ODLLM_TANH_P2));
    p = fmadd(p, z, splat(ODLLM_TANH_P3));
    p = fmadd(p, z, splat(ODLLM_TANH_P4));
    const float32x4_t small = fmadd(vmulq_f32(p, z), x, x);
    const float32x4_t e = exp_ps(vaddq_f32(ax, ax));
    const float32x4_t magnitude = vsubq_f32(splat(1.0f), vdivq_f32(splat(2.0f), vaddq_f32(e, splat(1.0f))));
    /* Copy x's sign bit onto the magnitude. */
    const float32x4_t large = vbslq_f32(vdupq_n_u32(0x80000000u), x, magnitude);
    return vbslq_f32(vcltq_f32(ax, splat(ODLLM_TANH_SMALL)), small, large);
}

static inline float32x4_t silu_ps(float32x4_t x) {
    return vdivq_f32(x, vaddq_f32(splat(1.0f), exp_ps(vnegq_f32(x))));
}

static inline float32x4_t gelu_tanh_ps(float32x4_t x) {
    const float32x4_t x3 = vmulq_f32(vmulq_f32(x, x), x);
    const float32x4_t u = vmulq_f32(splat(ODLLM_SQRT_2_OVER_PI), fmadd(splat(ODLLM_GELU_CUBIC), x3, x));
    return vdivq_f32(x, vaddq_f32(splat(1.0f), exp_ps(vmulq_f32(splat(-2.0f), u))));
}

/* x·Φ(x), Φ(x) = erfc(−x/√2)/2. */
static inline float32x4_t gelu_erf_ps(float32x4_t x) {
    const float32x4_t one = splat(1.0f), half = splat(0.5f);
    const float32x4_t z = vmulq_f32(vabsq_f32(x), splat(ODLLM_SQRT_HALF));
    const float32x4_t t = vdivq_f32(one, fmadd(half, z, one));
    float32x4_t p = splat(ODLLM_ERFC_P0);
    p = fmadd(p, t, splat(ODLLM_ERFC_P1));
    p = fmadd(p, t, splat(ODLLM_ERFC_P2));
    p = fmadd(p, t, splat(ODLLM_ERFC_P3));
    p = fmadd(p, t, splat(ODLLM_ERFC_P4));
    p = fmadd(p, t, splat(ODLLM_ERFC_P5));
    p = fmadd(p, t, splat(ODLLM_ERFC_P6));
    p = fmadd(p, t, splat(ODLLM_ERFC_P7));
    p = fmadd(p, t, splat(ODLLM_ERFC_P8));
    p = fmadd(p, t, splat(ODLLM_ERFC_P9));
    const float32x4_t half_erfc = vmulq_f32(half, vmulq_f32(t, exp_ps(vfmsq_f32(p, z, z))));
    const float32x4_t phi = vbslq_f32(vcltq_f32(x, vdupq_n_f32(0.0f)), half_erfc, vsubq_f32(one, half_erfc));
    return vmulq_f32(x, phi);
}

static inline float32x4_t activation_ps(int32_t act, float32x4_t x) {
    switch (act) {
    case ODLLM_ACT_SILU: return silu_ps(x);
    case ODLLM_ACT_GELU_TANH: return gelu_tanh_ps(x);
    default: return gelu_erf_ps(x);
    }
}

/* The last count % 4 values go through a zero-padded vector too. */
static inline float32x4_t load_tail(const float * p, int64_t r) {
    float buffer[V] = { 0 };
    for (int64_t i = 0; i < r; i++) buffer[i] = p[i];
    return vld1q_f32(buffer);
}

static inline void store_tail(float * p, float32x4_t v, int64_t r) {
    float buffer[V];
    vst1q_f32(buffer, v);
    for (int64_t i = 0; i < r; i++) p[i] = buffer[i];
}

/* One body per activation, so that the switch is outside the loop. */
static ODLLM_ALWAYS_INLINE void activate_loop(int32_t act, const float * x, int64_t count, float * y) {
    int64_t i = 0;
    for (; i + V <= count; i += V) vst1q_f32(y + i, activation_ps(act, vld1q_f32(x + i)));
    if (i < count) store_tail(y + i, activation_ps(act, load_tail(x + i, count - i)), count - i);
}

static void activate(int32_t act, const float * x, int64_t count, float * y) {
    switch (act) {
    case ODLLM_ACT_SILU: activate_loop(ODLLM_ACT_SILU, x, count, y); break;
    case ODLLM_ACT_GELU_TANH: activate_loop(ODLLM_ACT_GELU_TANH, x, count, y); break;
    default: activate_loop(ODLLM_ACT_GELU_ERF, x, count, y); break;
    }
}

static ODLLM_ALWAYS_INLINE void gated_loop(int32_t act, const float * gate, const float * up, int64_t count, float * y) {
    int64_t i = 0;
    for (; i + V <= count; i += V) vst1q_f32(y + i, vmulq_f32(vld1q_f32(up + i), activation_ps(act, vld1q_f32(gate + i))));
    if (i < count) {
        const int64_t r = count - i;
        store_tail(y + i, vmulq_f32(load_tail(up + i, r), activation_ps(act, load_tail(gate + i, r))), r);
    }
}

static void gated_activate(int32_t act, const float * gate, const float * up, int64_t count, float * y) {
    switch (act) {
    case ODLLM_ACT_SILU: gated_loop(ODLLM_ACT_SILU, gate, up, count, y); break;
    case ODLLM_ACT_GELU_TANH: gated_loop(ODLLM_ACT_GELU_TANH, gate, up, count, y); break;
    default: gated_loop(ODLLM_ACT_GELU_ERF, gate, up, count, y); break;
    }
}

static void softcap(const float * x, int64_t count, float cap, float * y) {
    const float32x4_t c = splat(cap);
    int64_t i = 0;
    for (; i + V <= count; i += V) vst1q_f32(y + i, vmulq_f32(c, tanh_ps(vdivq_f32(vld1q_f32(x + i), c))));
    if (i < count) store_tail(y + i, vmulq_f32(c, tanh_ps(vdivq_f32(load_tail(x + i, count - i), c))), count - i);
}

static void add(const float * a, const float * b, int64_t count, float * y) {
    int64_t i = 0;
    for (; i + V <= count; i += V) vst1q_f32(y + i, vaddq_f32(vld1q_f32(a + i), vld1q_f32(b + i)));
    odllm_add_values(i, a, b, count, y);
}

/*
 * The contract's row sum: Σ x, or Σ (x − shift)² with the padding contributing 0, in 8 lanes: lo holds
 * lanes 0..3, hi lanes 4..7.
 */
static ODLLM_ALWAYS_INLINE float sum_row(int squares, const float * x, int64_t dim, float shift) {
    const float32x4_t s = splat(shift);
    float32x4_t lo = splat(0.0f), hi = splat(0.0f);
    for (int64_t i = 0; i < dim; i += 8) {
        float32x4_t a, b;
        if (i + 8 <= dim) {
            a = vld1q_f32(x + i);
            b = vld1q_f32(x + i + 4);
        } else {
            float padded[8] = { 0 };
            for (int64_t j = 0; j < dim - i; j++) padded[j] = x[i + j] - (squares ? shift : 0.0f);
            a = vld1q_f32(padded);
            b = vld1q_f32(padded + 4);
            if (squares) {
                /* Already centred, zero in the padding. */
                lo = vfmaq_f32(lo, a, a);
                hi = vfmaq_f32(hi, b, b);
            } else {
                lo = vaddq_f32(lo, a);
                hi = vaddq_f32(hi, b);
            }
            break;
        }
        if (squares) {
            a = vsubq_f32(a, s);
            b = vsubq_f32(b, s);
            lo = vfmaq_f32(lo, a, a);
            hi = vfmaq_f32(hi, b, b);
        } else {
            lo = vaddq_f32(lo, a);
            hi = vaddq_f32(hi, b);
        }
    }
    /* (l0+l4, l1+l5, l2+l6, l3+l7), then pairs 0+2 and 1+3, then those two. */
    const float32x4_t pairs = vaddq_f32(lo, hi);
    const float32x2_t quads = vadd_f32(vget_low_f32(pairs), vget_high_f32(pairs));
    return vget_lane_f32(quads, 0) + vget_lane_f32(quads, 1);
}

static void rms_norm(const float * x, int64_t dim, const float * w, float w_offset, float eps, float * y) {
    const float inv = 1.0f / sqrtf(sum_row(1, x, dim, 0.0f) / (float)dim + eps);
    const float32x4_t vinv = splat(inv), off = splat(w_offset);
    int64_t i = 0;
    for (; i + V <= dim; i += V)
        vst1q_f32(y + i, vmulq_f32(vmulq_f32(vld1q_f32(x + i), vinv), vaddq_f32(off, vld1q_f32(w + i))));
    odllm_rms_norm_values(i, x, dim, inv, w, w_offset, y);
}

static void layer_norm(const float * x, int64_t dim, const float * w, const float * b, float eps, float * y) {
    const float mean = sum_row(0, x, dim, 0.0f) / (float)dim;
    const float inv = 1.0f / sqrtf(sum_row(1, x, dim, mean) / (float)dim + eps);
    const float32x4_t vmean = splat(mean), vinv = splat(inv);
    int64_t i = 0;
    for (; i + V <= dim; i += V) {
        const float32x4_t v = vmulq_f32(vmulq_f32(vsubq_f32(vld1q_f32(x + i), vmean), vinv), vld1q_f32(w + i));
        vst1q_f32(y + i, b ? vaddq_f32(v, vld1q_f32(b + i)) : v);
    }
    odllm_layer_norm_values(i, x, dim, mean, inv, w, b, y);
}

static void rope(float * x, const float * cos, const float * sin, int64_t half) {
    int64_t i = 0;
    for (; i + V <= half; i += V) {
        const float32x4_t x1 = vld1q_f32(x + i), x2 = vld1q_f32(x + i + half);
        const float32x4_t c = vld1q_f32(cos + i), s = vld1q_f32(sin + i);
        vst1q_f32(x + i, vsubq_f32(vmulq_f32(x1, c), vmulq_f32(x2, s)));
        vst1q_f32(x + i + half, vaddq_f32(vmulq_f32(x2, c), vmulq_f32(x1, s)));
    }
    odllm_rope_values(i, x, cos, sin, half);
}

const odllm_op_kernels odllm_ops_neon = {
    .rms_norm = rms_norm,
    .layer_norm = layer_norm,
    .rope = rope,
    .activate = activate,
    .gated_activate = gated_activate,
    .add = add,
    .softcap = softcap,
};
