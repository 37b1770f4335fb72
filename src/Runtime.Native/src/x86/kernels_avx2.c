/*
 * x86-64 kernels for AVX2 + FMA + F16C. This file alone is compiled with -mavx2 -mfma -mf16c;
 * the dispatcher only hands out this table after cpuid/xgetbv confirm all three.
 */
#include <immintrin.h>

#include "../kernels.h"

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Lanes [0, r) set: loads the last k % 8 floats without touching memory past the row. */
static inline __m256i tail_mask(int64_t r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __m256 load_f16x8(const uint16_t * p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
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

static void gemv_bf16(const float * x, const uint16_t * w, int64_t ldw, int64_t n, int64_t k, float * y) {
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

static void f16_to_f32(const uint16_t * src, float * dst, int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, load_f16x8(src + i));
    for (; i < count; i++) dst[i] = _cvtsh_ss(src[i]);
}

static void bf16_to_f32(const uint16_t * src, float * dst, int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, load_bf16x8(src + i));
    for (; i < count; i++) dst[i] = odllm_bf16_to_f32(src[i]);
}

const odllm_kernel_table odllm_kernels_avx2 = {
    .name = "avx2",
    .gemm_f32 = gemm_f32,
    .gemv_f16 = gemv_f16,
    .gemv_bf16 = gemv_bf16,
    .f16_to_f32 = f16_to_f32,
    .bf16_to_f32 = bf16_to_f32,
};
