/*
 * Element-wise and row-wise operators for AVX2 + FMA (compiled with -mavx2 -mfma -mf16c; the AVX2 tables
 * hand them out), eight values at a time in exactly the float contract of kernels.h, so that they return the
 * scalar reference's bits.
 */
#include <immintrin.h>
#include <math.h>

#include "../kernels.h"
#include "simd_avx2.h"

enum { V = 8 };

#define SET(c) _mm256_set1_ps(c)

/* The contract's exp: the clamp keeps 2^n a normal float; above it e^x is +inf, as expf says. NaN passes through. */
static inline __m256 exp_ps(__m256 x) {
    const __m256 overflow = _mm256_cmp_ps(x, SET(ODLLM_EXP_MAX), _CMP_GT_OQ);
    x = _mm256_max_ps(SET(ODLLM_EXP_MIN), x);
    x = _mm256_min_ps(SET(ODLLM_EXP_MAX), x);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, SET(ODLLM_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, SET(ODLLM_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, SET(ODLLM_LN2_LO), r);
    __m256 p = SET(ODLLM_EXP_P0);
    p = _mm256_fmadd_ps(p, r, SET(ODLLM_EXP_P1));
    p = _mm256_fmadd_ps(p, r, SET(ODLLM_EXP_P2));
    p = _mm256_fmadd_ps(p, r, SET(ODLLM_EXP_P3));
    p = _mm256_fmadd_ps(p, r, SET(ODLLM_EXP_P4));
    p = _mm256_fmadd_ps(p, r, SET(ODLLM_EXP_P5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    const __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_blendv_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(scale)), _mm256_set1_ps(INFINITY), overflow);
}

/* The contract's tanh: the polynomial below 0.625, where 1 − 2/(e^2|x| + 1) would lose the small result's digits. */
static inline __m256 tanh_ps(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 ax = _mm256_andnot_ps(sign, x);
    const __m256 z = _mm256_mul_ps(x, x);
    __m256 p = SET(ODLLM_TANH_P0);
    p = _mm256_fmadd_ps(p, z, SET(ODLLM_TANH_P1));
    p = _mm256_fmadd_ps(p, z, SET(ODLLM_TANH_P2));
    p = _mm256_fmadd_ps(p, z, SET(ODLLM_TANH_P3));
    p = _mm256_fmadd_ps(p, z, SET(ODLLM_TANH_P4));
    const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
    const __m256 e = exp_ps(_mm256_add_ps(ax, ax));
    __m256 large = _mm256_sub_ps(_mm256_set1_ps(1.0f),
                                 _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
    large = _mm256_or_ps(large, _mm256_and_ps(sign, x));
    return _mm256_blendv_ps(large, small, _mm256_cmp_ps(ax, SET(ODLLM_TANH_SMALL), _CMP_LT_OQ));
}

static inline __m256 silu_ps(__m256 x) {
    const __m256 e = exp_ps(_mm256_xor_ps(x, SET(-0.0f)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

static inline __m256 gelu_tanh_ps(__m256 x) {
    const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    const __m256 u = _mm256_mul_ps(SET(ODLLM_SQRT_2_OVER_PI), _mm256_fmadd_ps(SET(ODLLM_GELU_CUBIC), x3, x));
    const __m256 e = exp_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* x·Φ(x), Φ(x) = erfc(−x/√2)/2. */
static inline __m256 gelu_erf_ps(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 z = _mm256_mul_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), SET(ODLLM_SQRT_HALF));
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(half, z, one));
    __m256 p = SET(ODLLM_ERFC_P0);
    p = _mm256_fmadd_ps(p, t, SET(ODLLM_ERFC_P1));
    p = _mm256_fmadd_ps(p, t, SET(ODLLM_ERFC_P2));
    p = _mm256_fmadd_ps(p, t, SET(ODLLM_ERFC_P3));
    p = _mm256_fmadd_ps(p, t, SET(ODLLM_ERFC_P4));
    p = _mm256_fmadd_ps(p, t, SET(ODLLM_ERFC_P5));
    p = _mm256_fmadd_ps(p, t, SET(ODLLM_ERFC_P6));
    p = _mm256_fmadd_ps(p, t, SET(ODLLM_ERFC_P7));
    p = _mm256_fmadd_ps(p, t, SET(ODLLM_ERFC_P8));
    p = _mm256_fmadd_ps(p, t, SET(ODLLM_ERFC_P9));
    const __m256 half_erfc = _mm256_mul_ps(half, _mm256_mul_ps(t, exp_ps(_mm256_fnmadd_ps(z, z, p))));
    const __m256 phi = _mm256_blendv_ps(_mm256_sub_ps(one, half_erfc), half_erfc,
                                        _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
    return _mm256_mul_ps(x, phi);
}

static inline __m256 activation_ps(int32_t act, __m256 x) {
    switch (act) {
    case ODLLM_ACT_SILU: return silu_ps(x);
    case ODLLM_ACT_GELU_TANH: return gelu_tanh_ps(x);
    default: return gelu_erf_ps(x);
    }
}

/* The last count % 8 values (or a row's) go through a zero-padded vector too. */
static inline __m256 load_tail(const float * p, int64_t r) {
    float buffer[V] = { 0 };
    for (int64_t i = 0; i < r; i++) buffer[i] = p[i];
    return _mm256_loadu_ps(buffer);
}

static inline void store_tail(float * p, __m256 v, int64_t r) {
    float buffer[V];
    _mm256_storeu_ps(buffer, v);
    for (int64_t i = 0; i < r; i++) p[i] = buffer[i];
}

/* One body per activation, so that the switch is outside the loop. */
static ODLLM_ALWAYS_INLINE void activate_loop(int32_t act, const float * x, int64_t count, float * y) {
    int64_t i = 0;
    for (; i + V <= count; i += V) _mm256_storeu_ps(y + i, activation_ps(act, _mm256_loadu_ps(x + i)));
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
    for (; i + V <= count; i += V)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(up + i), activation_ps(act, _mm256_loadu_ps(gate + i))));
    if (i < count) {
        const int64_t r = count - i;
        store_tail(y + i, _mm256_mul_ps(load_tail(up + i, r), activation_ps(act, load_tail(gate + i, r))), r);
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
    const __m256 c = _mm256_set1_ps(cap);
    int64_t i = 0;
    for (; i + V <= count; i += V)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(c, tanh_ps(_mm256_div_ps(_mm256_loadu_ps(x + i), c))));
    if (i < count) store_tail(y + i, _mm256_mul_ps(c, tanh_ps(_mm256_div_ps(load_tail(x + i, count - i), c))), count - i);
}

static void add(const float * a, const float * b, int64_t count, float * y) {
    int64_t i = 0;
    for (; i + V <= count; i += V) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    odllm_add_values(i, a, b, count, y);
}

/* The contract's row sum: Σ x, or Σ (x − shift)² with the padding contributing 0; one accumulator is its 8 lanes. */
static ODLLM_ALWAYS_INLINE float sum_row(int squares, const float * x, int64_t dim, float shift) {
    const __m256 s = SET(shift);
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + V <= dim; i += V) {
        const __m256 v = _mm256_loadu_ps(x + i);
        if (squares) {
            const __m256 d = _mm256_sub_ps(v, s);
            acc = _mm256_fmadd_ps(d, d, acc);
        } else {
            acc = _mm256_add_ps(acc, v);
        }
    }
    if (i < dim) {
        const __m256 v = load_tail(x + i, dim - i);
        if (squares) {
            const __m256 in_row = _mm256_castsi256_ps(
                _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(dim - i)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
            const __m256 d = _mm256_and_ps(_mm256_sub_ps(v, s), in_row);
            acc = _mm256_fmadd_ps(d, d, acc);
        } else {
            acc = _mm256_add_ps(acc, v);
        }
    }
    /* hsum's order is the contract's: (l0+l4, l1+l5, l2+l6, l3+l7), then pairs 0+2 and 1+3, then those two. */
    return hsum(acc);
}

static void rms_norm(const float * x, int64_t dim, const float * w, float w_offset, float eps, float * y) {
    const float inv = 1.0f / sqrtf(sum_row(1, x, dim, 0.0f) / (float)dim + eps);
    const __m256 vinv = SET(inv), off = SET(w_offset);
    int64_t i = 0;
    for (; i + V <= dim; i += V)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv), _mm256_add_ps(off, _mm256_loadu_ps(w + i))));
    odllm_rms_norm_values(i, x, dim, inv, w, w_offset, y);
}

static void layer_norm(const float * x, int64_t dim, const float * w, const float * b, float eps, float * y) {
    const float mean = sum_row(0, x, dim, 0.0f) / (float)dim;
    const float inv = 1.0f / sqrtf(sum_row(1, x, dim, mean) / (float)dim + eps);
    const __m256 vmean = SET(mean), vinv = SET(inv);
    int64_t i = 0;
    for (; i + V <= dim; i += V) {
        const __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmean), vinv), _mm256_loadu_ps(w + i));
        _mm256_storeu_ps(y + i, b ? _mm256_add_ps(v, _mm256_loadu_ps(b + i)) : v);
    }
    odllm_layer_norm_values(i, x, dim, mean, inv, w, b, y);
}

static void rope(float * x, const float * cos, const float * sin, int64_t half) {
    int64_t i = 0;
    for (; i + V <= half; i += V) {
        const __m256 x1 = _mm256_loadu_ps(x + i), x2 = _mm256_loadu_ps(x + i + half);
        const __m256 c = _mm256_loadu_ps(cos + i), s = _mm256_loadu_ps(sin + i);
        _mm256_storeu_ps(x + i, _mm256_sub_ps(_mm256_mul_ps(x1, c), _mm256_mul_ps(x2, s)));
        _mm256_storeu_ps(x + i + half, _mm256_add_ps(_mm256_mul_ps(x2, c), _mm256_mul_ps(x1, s)));
    }
    odllm_rope_values(i, x, cos, sin, half);
}

const odllm_op_kernels odllm_ops_avx2 = {
    .rms_norm = rms_norm,
    .layer_norm = layer_norm,
    .rope = rope,
    .activate = activate,
    .gated_activate = gated_activate,
    .add = add,
    .softcap = softcap,
};
