/* The attend kernel for AVX2 + FMA + F16C (compiled with those flags; dispatched only where cpuid reports them). */
#include <immintrin.h>
#include <math.h>

#include "../kernels.h"
#include "simd_avx2.h"

static inline float attn_dot_f32(const float * a, const float * b, int64_t d) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    if (i + 8 <= d) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        i += 8;
    }
    float sum = hsum(_mm256_add_ps(s0, s1));
    for (; i < d; i++) sum += a[i] * b[i];
    return sum;
}

static inline float attn_dot_f16(const float * a, const uint16_t * b, int64_t d) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load_f16x8(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), load_f16x8(b + i + 8), s1);
    }
    if (i + 8 <= d) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load_f16x8(b + i), s0);
        i += 8;
    }
    float sum = hsum(_mm256_add_ps(s0, s1));
    for (; i < d; i++) sum += a[i] * _cvtsh_ss(b[i]);
    return sum;
}

/* The four sums of s0..s3, in that order. */
static inline __m128 hsum8x4(__m256 s0, __m256 s1, __m256 s2, __m256 s3) {
    const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(s0, s1), _mm256_hadd_ps(s2, s3));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

static inline void attn_dot4_f32(const float * a, const float * b, int64_t ldb, int64_t d, float * out) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) {
        const __m256 x = _mm256_loadu_ps(a + i);
        s0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + ldb + i), s1);
        s2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + 2 * ldb + i), s2);
        s3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + 3 * ldb + i), s3);
    }
    float tail[4] = { 0, 0, 0, 0 };
    for (; i < d; i++)
        for (int r = 0; r < 4; r++) tail[r] += a[i] * b[r * ldb + i];
    _mm_storeu_ps(out, _mm_add_ps(hsum8x4(s0, s1, s2, s3), _mm_loadu_ps(tail)));
}

static inline void attn_dot4_f16(const float * a, const uint16_t * b, int64_t ldb, int64_t d, float * out) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) {
        const __m256 x = _mm256_loadu_ps(a + i);
        s0 = _mm256_fmadd_ps(x, load_f16x8(b + i), s0);
        s1 = _mm256_fmadd_ps(x, load_f16x8(b + ldb + i), s1);
        s2 = _mm256_fmadd_ps(x, load_f16x8(b + 2 * ldb + i), s2);
        s3 = _mm256_fmadd_ps(x, load_f16x8(b + 3 * ldb + i), s3);
    }
    float tail[4] = { 0, 0, 0, 0 };
    for (; i < d; i++)
        for (int r = 0; r < 4; r++) tail[r] += a[i] * _cvtsh_ss(b[r * ldb + i]);
    _mm_storeu_ps(out, _mm_add_ps(hsum8x4(s0, s1, s2, s3), _mm_loadu_ps(tail)));
}

static inline void attn_axpy4_f32(float * y, const float * a, const float * x, int64_t ldx, int64_t d) {
    const __m256 a0 = _mm256_set1_ps(a[0]), a1 = _mm256_set1_ps(a[1]), a2 = _mm256_set1_ps(a[2]), a3 = _mm256_set1_ps(a[3]);
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 acc = _mm256_fmadd_ps(a0, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        acc = _mm256_fmadd_ps(a1, _mm256_loadu_ps(x + ldx + i), acc);
        acc = _mm256_fmadd_ps(a2, _mm256_loadu_ps(x + 2 * ldx + i), acc);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a3, _mm256_loadu_ps(x + 3 * ldx + i), acc));
    }
    for (; i < d; i++) y[i] = y[i] + a[0] * x[i] + a[1] * x[ldx + i] + a[2] * x[2 * ldx + i] + a[3] * x[3 * ldx + i];
}

static inline void attn_axpy4_f16(float * y, const float * a, const uint16_t * x, int64_t ldx, int64_t d) {
    const __m256 a0 = _mm256_set1_ps(a[0]), a1 = _mm256_set1_ps(a[1]), a2 = _mm256_set1_ps(a[2]), a3 = _mm256_set1_ps(a[3]);
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 acc = _mm256_fmadd_ps(a0, load_f16x8(x + i), _mm256_loadu_ps(y + i));
        acc = _mm256_fmadd_ps(a1, load_f16x8(x + ldx + i), acc);
        acc = _mm256_fmadd_ps(a2, load_f16x8(x + 2 * ldx + i), acc);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a3, load_f16x8(x + 3 * ldx + i), acc));
    }
    for (; i < d; i++)
        y[i] = y[i] + a[0] * _cvtsh_ss(x[i]) + a[1] * _cvtsh_ss(x[ldx + i]) + a[2] * _cvtsh_ss(x[2 * ldx + i])
             + a[3] * _cvtsh_ss(x[3 * ldx + i]);
}

static inline void attn_axpy_f32(float * y, float a, const float * x, int64_t d) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < d; i++) y[i] += a * x[i];
}

static inline void attn_axpy_f16(float * y, float a, const uint16_t * x, int64_t d) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load_f16x8(x + i), _mm256_loadu_ps(y + i)));
    for (; i < d; i++) y[i] += a * _cvtsh_ss(x[i]);
}

static inline void attn_decode_f16(const uint16_t * src, float * dst, int64_t d) {
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) _mm256_storeu_ps(dst + i, load_f16x8(src + i));
    for (; i < d; i++) dst[i] = _cvtsh_ss(src[i]);
}

static inline void attn_scale(float * y, float a, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] *= a;
}

/*
 * exp(x) for x <= 0 (scores minus their maximum), Cephes' expf: x = n·ln2 + r with |r| <= ln2/2, a degree-6
 * polynomial for e^r, times 2^n built in the exponent bits. Within 2 ulp of expf; inputs below -87.3 (where expf
 * would turn subnormal) give about 1e-38, which no softmax sum of at least 1 can tell from 0.
 */
static inline __m256 exp_nonpositive(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

static inline float attn_exp_sum(float * s, int64_t n, float max) {
    const __m256 vmax = _mm256_set1_ps(max);
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(s + i), vmax));
        _mm256_storeu_ps(s + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum(acc);
    for (; i < n; i++) {
        s[i] = expf(s[i] - max);
        sum += s[i];
    }
    return sum;
}

#include "../attention_kernel.h"

ATTN_DEFINE(odllm_avx2)
