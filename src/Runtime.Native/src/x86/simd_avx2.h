/* Internal: AVX2 + F16C register helpers the x86 kernel files share (include only from files built with those flags). */
#ifndef ODLLM_SIMD_AVX2_H
#define ODLLM_SIMD_AVX2_H

#include <immintrin.h>
#include <stdint.h>

/* ((v0+v4) + (v2+v6)) + ((v1+v5) + (v3+v7)): the reduction order kernels.h's integer contract names. */
static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 load_f16x8(const uint16_t * p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

#endif /* ODLLM_SIMD_AVX2_H */
