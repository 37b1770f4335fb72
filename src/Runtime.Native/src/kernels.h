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

    /*
     * Integer paths (k a multiple of ODLLM_QK). Activations are first quantized per block of 32:
     * d = max|x| / 127, q = round-half-even(x * (1/d)). Then each output is, in exactly this float
     * arithmetic, so that every table (and the managed fallback) returns the same bits:
     *   lane(b, l) = sum of qw*qx over values 4l..4l+3 of block b (an exact integer), l = 0..7
     *   c(b)       = dw(j, b) * xd[i*nb + b]   (f32 product; int8: just xd, the row scale comes last)
     *   acc[l]     = fmaf((float)lane(b, l), c(b), acc[l]) for b = 0, 1, ... in order, from acc = 0
     *   y          = ((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7))   (int8: times its row scale)
     * which is what one 8-lane AVX2 accumulator, or two 4-lane NEON sdot accumulators, compute.
     * Identical bits matter: a quantized activation is a step function of the previous layer's output,
     * so backends that differ in the last ulp would round some activation differently and drift apart.
     */
    void (*quantize_act)(const float * x, int64_t k, int8_t * q, float * d);
    /* w: n rows of k/32 Q8_0 blocks (34 bytes: f16 d, 32 int8). */
    void (*gemm_q8_0)(const int8_t * xq, const float * xd, int64_t m, const uint8_t * w, int64_t n, int64_t k,
                      float * y, int64_t ldy);
    /* w: n rows of k/32 Q4_0 blocks (18 bytes: f16 d, byte t = value t | value t+16 << 4, offset 8). */
    void (*gemm_q4_0)(const int8_t * xq, const float * xd, int64_t m, const uint8_t * w, int64_t n, int64_t k,
                      float * y, int64_t ldy);
    /* w: n rows of k int8; scales: n f32 row scales, possibly unaligned. */
    void (*gemm_i8)(const int8_t * xq, const float * xd, int64_t m, const int8_t * w, const uint8_t * scales,
                    int64_t n, int64_t k, float * y, int64_t ldy);
} odllm_kernel_table;

/* Kernel templates take their shape as constant arguments and must be specialized at every call. */
#if defined(_MSC_VER)
#  define ODLLM_ALWAYS_INLINE __forceinline
#else
#  define ODLLM_ALWAYS_INLINE inline __attribute__((always_inline))
#endif

/* Values per quantization block, of weights (Q8_0, Q4_0) and of activations. */
#define ODLLM_QK 32
#define ODLLM_Q8_0_BYTES 34
#define ODLLM_Q4_0_BYTES 18

/* The scalar integer kernels, shared by tables that have no SIMD version of one yet. */
void odllm_ref_quantize_act(const float * x, int64_t k, int8_t * q, float * d);
void odllm_ref_gemm_q8_0(const int8_t * xq, const float * xd, int64_t m, const uint8_t * w, int64_t n, int64_t k,
                         float * y, int64_t ldy);
void odllm_ref_gemm_q4_0(const int8_t * xq, const float * xd, int64_t m, const uint8_t * w, int64_t n, int64_t k,
                         float * y, int64_t ldy);
void odllm_ref_gemm_i8(const int8_t * xq, const float * xd, int64_t m, const int8_t * w, const uint8_t * scales,
                       int64_t n, int64_t k, float * y, int64_t ldy);

static inline float odllm_load_f32(const uint8_t * p) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

static inline uint16_t odllm_load_u16(const uint8_t * p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

extern const odllm_kernel_table odllm_kernels_ref;
#if defined(ODLLM_HAVE_AVX2)
extern const odllm_kernel_table odllm_kernels_avx2;
#endif
#if defined(ODLLM_HAVE_AVX_VNNI)
extern const odllm_kernel_table odllm_kernels_avx2_vnni;
#endif
#if defined(ODLLM_HAVE_AVX512_VNNI)
extern const odllm_kernel_table odllm_kernels_avx512_vnni;
#endif
#if defined(ODLLM_HAVE_NEON)
extern const odllm_kernel_table odllm_kernels_neon;
extern const odllm_kernel_table odllm_kernels_neon_dotprod;
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
int odllm_cpu_has_avx_vnni(void);
int odllm_cpu_has_avx512_vnni(void);
int odllm_cpu_has_neon(void);
int odllm_cpu_has_dotprod(void);
int odllm_cpu_physical_cores(void);

#endif /* ODLLM_KERNELS_H */
