/* Internal: the per-ISA kernel table the dispatcher fills and the operators call. */
#ifndef ODLLM_KERNELS_H
#define ODLLM_KERNELS_H

#include <stdint.h>
#include <string.h>

#include "odllm.h"

/*
 * Every kernel works on one thread's slice; the operator in odllm.c does threading and
 * argument checks, so kernels may assume valid pointers and sizes >= 1.
 */
typedef struct odllm_kernel_table {
    const char * name;
    /* y[i*ldy + j] = dot(x + i*ldx, w + j*ldw, k) for i < m, j < n: f32 weights, any m. */
    void (*gemm_f32)(const float * x, int64_t ldx, int64_t m, const float * w, int64_t ldw,
                     int64_t n, int64_t k, float * y, int64_t ldy);
    /* y[j] = dot(x, decode(w + j*ldw), k) for j < n, decoding fused into the dot product. */
    void (*gemv_f16)(const float * x, const uint16_t * w, int64_t ldw, int64_t n, int64_t k, float * y);
    void (*gemv_bf16)(const float * x, const uint16_t * w, int64_t ldw, int64_t n, int64_t k, float * y);
    /* dst[0..count) = decode(src[0..count)). */
    void (*f16_to_f32)(const uint16_t * src, float * dst, int64_t count);
    void (*bf16_to_f32)(const uint16_t * src, float * dst, int64_t count);
} odllm_kernel_table;

extern const odllm_kernel_table odllm_kernels_ref;
#if defined(ODLLM_HAVE_AVX2)
extern const odllm_kernel_table odllm_kernels_avx2;
#endif
#if defined(ODLLM_HAVE_NEON)
extern const odllm_kernel_table odllm_kernels_neon;
#endif

/* IEEE binary16 -> binary32, exact for every input including subnormals, infinities and NaNs. */
static inline float odllm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {
            /* Subnormal half: renormalize, since every half subnormal is a normal float. */
            exp = 113;
            while (!(mant & 0x400u)) { mant <<= 1; exp--; }
            bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float odllm_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The persistent pool: fn(arg, ith, nth) runs once for each ith in [0, nth), ith 0 on the caller. */
typedef struct odllm_pool odllm_pool;
typedef void (*odllm_pool_fn)(void * arg, int ith, int nth);

/* Starts n_threads - 1 workers; returns an odllm_status. */
int odllm_pool_create(int n_threads, odllm_pool ** out);
void odllm_pool_free(odllm_pool * pool);
/* Runs fn on nth threads (1 <= nth <= pool size) and returns when all have finished. */
void odllm_pool_run(odllm_pool * pool, int nth, odllm_pool_fn fn, void * arg);

/* CPU feature detection. */
int odllm_cpu_has_avx2(void);
int odllm_cpu_has_neon(void);
int odllm_cpu_physical_cores(void);

#endif /* ODLLM_KERNELS_H */
