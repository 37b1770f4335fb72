/* Internal: the per-ISA kernel table the dispatcher fills and the operators call. */
#ifndef ODLLM_KERNELS_H
#define ODLLM_KERNELS_H

#include <stdint.h>
#include <string.h>

#include "odllm.h"

typedef struct odllm_attn_task odllm_attn_task;

/*
 * Element-wise and row-wise kernels of the forward pass, on one thread's share: one row, one head or a
 * run of count values. Inputs and outputs may be the same buffer. The tables of one architecture share
 * one set (the integer extensions change nothing here).
 *
 * Every table (and the managed fallback) computes the same bits, by this float contract; fma is one rounding,
 * every other operation IEEE f32 in the order written:
 *   row sums       8 lanes, lane l summing values l, l+8, … of the row zero-padded to a multiple of 8 in order
 *                  (acc + v, or fma(d, d, acc) for squares), reduced as ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7))
 *   rms_norm       inv = 1/sqrt(Σx²/dim + eps); y = (x·inv)·(w_offset + w)
 *   layer_norm     mean = Σx/dim; d = x − mean (0 in padding); inv = 1/sqrt(Σd²/dim + eps); y = ((x − mean)·inv)·w [+ b]
 *   rope           x1·cos − x2·sin and x2·cos + x1·sin, unfused
 *   exp(x)         +inf above EXP_MAX, NaN kept; x clamped to [EXP_MIN, EXP_MAX]; n = round-half-even(x·LOG2E);
 *                  r = fma(−n, LN2_LO, fma(−n, LN2_HI, x)); p = Horner of P0..P5 in r by fma;
 *                  p = fma(p, r·r, r) + 1; times 2^n from the exponent bits (Cephes expf)
 *   tanh(x)        |x| < TANH_SMALL: fma(p·z, x, x), z = x·x, p = Horner of TANH_P0..P4 in z by fma (Cephes tanhf);
 *                  else copysign(1 − 2/(exp(|x| + |x|) + 1), x)
 *   silu           x / (1 + exp(−x))
 *   gelu_tanh      u = SQRT_2_OVER_PI·fma(GELU_CUBIC, (x·x)·x, x); x / (1 + exp(−2·u)), which is
 *                  0.5·x·(1 + tanh u) without the cancellation of 1 + tanh u for x < 0
 *   gelu_erf       z = |x|·SQRT_HALF; t = 1/fma(0.5, z, 1); p = Horner of ERFC_P0..P9 in t by fma;
 *                  h = 0.5·(t·exp(fma(−z, z, p))) (erfc(z)/2, Numerical Recipes' erfcc, relative error < 1.2e-7);
 *                  x·h for x < 0, else x·(1 − h)
 *   gated          up·act(gate);  softcap  cap·tanh(x/cap)
 */
#define ODLLM_EXP_MIN (-87.33654f)
#define ODLLM_EXP_MAX 88.3762626647949f
#define ODLLM_LOG2E 1.44269504088896341f
#define ODLLM_LN2_HI 0.693359375f
#define ODLLM_LN2_LO (-2.12194440e-4f)
#define ODLLM_EXP_P0 1.9875691500e-4f
#define ODLLM_EXP_P1 1.3981999507e-3f
#define ODLLM_EXP_P2 8.3334519073e-3f
#define ODLLM_EXP_P3 4.1665795894e-2f
#define ODLLM_EXP_P4 1.6666665459e-1f
#define ODLLM_EXP_P5 5.0000001201e-1f
#define ODLLM_TANH_SMALL 0.625f
#define ODLLM_TANH_P0 (-5.70498872745e-3f)
#define ODLLM_TANH_P1 2.06390887954e-2f
#define ODLLM_TANH_P2 (-5.37397155531e-2f)
#define ODLLM_TANH_P3 1.33314422036e-1f
#define ODLLM_TANH_P4 (-3.33332819422e-1f)
#define ODLLM_SQRT_2_OVER_PI 0.7978845608028654f
#define ODLLM_GELU_CUBIC 0.044715f
#define ODLLM_SQRT_HALF 0.70710678118654752f
#define ODLLM_ERFC_P0 0.17087277f
#define ODLLM_ERFC_P1 (-0.82215223f)
#define ODLLM_ERFC_P2 1.48851587f
#define ODLLM_ERFC_P3 (-1.13520398f)
#define ODLLM_ERFC_P4 0.27886807f
#define ODLLM_ERFC_P5 (-0.18628806f)
#define ODLLM_ERFC_P6 0.09678418f
#define ODLLM_ERFC_P7 0.37409196f
#define ODLLM_ERFC_P8 1.00002368f
#define ODLLM_ERFC_P9 (-1.26551223f)
typedef struct odllm_op_kernels {
    /* y = x · 1/sqrt(mean(x²) + eps) · (w_offset + w) over one row of dim. */
    void (*rms_norm)(const float * x, int64_t dim, const float * w, float w_offset, float eps, float * y);
    /* y = (x − mean) · 1/sqrt(variance + eps) · w + b over one row of dim; b may be NULL. */
    void (*layer_norm)(const float * x, int64_t dim, const float * w, const float * b, float eps, float * y);
    /* One head: (x[i], x[i + half]) rotated by the angle whose cos/sin are cos[i], sin[i], i < half. */
    void (*rope)(float * x, const float * cos, const float * sin, int64_t half);
    /* y = act(x), act an odllm_activation. */
    void (*activate)(int32_t act, const float * x, int64_t count, float * y);
    /* y = act(gate) · up. */
    void (*gated_activate)(int32_t act, const float * gate, const float * up, int64_t count, float * y);
    void (*add)(const float * a, const float * b, int64_t count, float * y);
    /* y = cap · tanh(x / cap). */
    void (*softcap)(const float * x, int64_t count, float cap, float * y);
} odllm_op_kernels;

extern const odllm_op_kernels odllm_ops_ref;
#if defined(ODLLM_HAVE_AVX2)
extern const odllm_op_kernels odllm_ops_avx2;
#endif
#if defined(ODLLM_HAVE_NEON)
extern const odllm_op_kernels odllm_ops_neon;
#endif

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
     *
     * The one exception is the neon-i8mm table for m >= 2 (prefill): smmla sums 8 products, so it follows the
     * block-dot contract instead, for every row of such a call:
     *   dot(b) = sum of qw*qx over the 32 values of block b (an exact integer)
     *   acc    = fmaf((float)dot(b), c(b), acc) for b = 0, 1, ... in order, from acc = 0;  y = acc (int8: times its row scale)
     * It differs from the lane contract only in float summation order; with m = 1 (decode) it follows the lane contract.
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
    const odllm_op_kernels * ops;

    /* Attention of one query row's heads that share a KV head, over an f32 or an f16 cache (attention_kernel.h). */
    void (*attend_f32)(const odllm_attn_task * task);
    void (*attend_f16)(const odllm_attn_task * task);
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
#if defined(ODLLM_HAVE_I8MM)
extern const odllm_kernel_table odllm_kernels_neon_i8mm;
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

/*
 * The row operators' per-value formulas, for values i … end − 1: the whole row in the scalar reference, the rest
 * after the last whole vector in the SIMD tables, so that the contract's arithmetic of one value is written once.
 */
static inline void odllm_rms_norm_values(int64_t i, const float * x, int64_t dim, float inv, const float * w,
                                         float w_offset, float * y) {
    for (; i < dim; i++) y[i] = (x[i] * inv) * (w_offset + w[i]);
}

static inline void odllm_layer_norm_values(int64_t i, const float * x, int64_t dim, float mean, float inv,
                                           const float * w, const float * b, float * y) {
    for (; i < dim; i++) {
        const float v = ((x[i] - mean) * inv) * w[i];
        y[i] = b ? v + b[i] : v;
    }
}

/* Rotates pairs (i, i + half) of one head. */
static inline void odllm_rope_values(int64_t i, float * x, const float * cos, const float * sin, int64_t half) {
    for (; i < half; i++) {
        const float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * cos[i] - x2 * sin[i];
        x[i + half] = x2 * cos[i] + x1 * sin[i];
    }
}

static inline void odllm_add_values(int64_t i, const float * a, const float * b, int64_t count, float * y) {
    for (; i < count; i++) y[i] = a[i] + b[i];
}

/* The persistent pool: fn(arg, ith, nth) runs once for each ith in [0, nth), ith 0 on the caller. */
typedef struct odllm_pool odllm_pool;
typedef void (*odllm_pool_fn)(void * arg, int ith, int nth);

/* Starts n_threads - 1 workers; returns an odllm_status. */
int odllm_pool_create(int n_threads, odllm_pool ** out);
void odllm_pool_free(odllm_pool * pool);
/* Runs fn on nth threads (1 <= nth <= pool size) and returns when all have finished. */
void odllm_pool_run(odllm_pool * pool, int nth, odllm_pool_fn fn, void * arg);

/*
 * For operators defined outside odllm.c: takes the context's call lock (one operator at a time owns the pool)
 * and returns its kernel table, pool and thread count; odllm_context_unlock releases it.
 */
const odllm_kernel_table * odllm_context_lock(odllm_context * ctx, odllm_pool ** pool, int * n_threads);
void odllm_context_unlock(odllm_context * ctx);

/* CPU feature detection. */
int odllm_cpu_has_avx2(void);
int odllm_cpu_has_avx_vnni(void);
int odllm_cpu_has_avx512_vnni(void);
int odllm_cpu_has_neon(void);
int odllm_cpu_has_dotprod(void);
int odllm_cpu_has_i8mm(void);
int odllm_cpu_physical_cores(void);

/* ---- Attention (attention.c; kernels in attention_kernel.h, instantiated per instruction set) ---- */

/* One query row's heads [h0, h0 + heads) that read the same KV head: the unit of work of an attend kernel. */
struct odllm_attn_task {
    const float * q;          /* heads rows of d, d apart */
    float * out;              /* heads rows of d, d apart */
    const float * slopes;     /* ALiBi slope of each of the heads, or NULL */
    const void * k, * v;      /* the row of the first visible position of this KV head */
    int64_t ld;               /* elements from one position's row to the next */
    int64_t first_key;        /* position of that first row (ALiBi adds slope·position) */
    int64_t count;            /* visible positions, >= 1 */
    int64_t d;
    int64_t heads;
    float scale, softcap;
    float * scores;           /* heads·count floats of scratch */
    float * row;              /* ODLLM_ATTN_KEY_BLOCK·d floats of scratch: cache rows decoded to f32 */
};

/* Cache rows an attend kernel takes at a time. */
#define ODLLM_ATTN_KEY_BLOCK 4

void odllm_ref_attend_f32(const odllm_attn_task * task);
void odllm_ref_attend_f16(const odllm_attn_task * task);
#if defined(ODLLM_HAVE_AVX2)
void odllm_avx2_attend_f32(const odllm_attn_task * task);
void odllm_avx2_attend_f16(const odllm_attn_task * task);
#endif
#if defined(ODLLM_HAVE_NEON)
void odllm_neon_attend_f32(const odllm_attn_task * task);
void odllm_neon_attend_f16(const odllm_attn_task * task);
#endif

/* What an operator outside odllm.c gets of a context between odllm_context_begin and odllm_context_end. */
typedef struct odllm_op {
    const odllm_kernel_table * kernels;
    odllm_pool * pool;
    int n_threads;
    float * scratch; /* at least the floats asked for, valid until odllm_context_end */
} odllm_op;

/* Takes the context's call lock and grows its scratch to scratch_floats; on failure the lock is not held. */
int odllm_context_begin(odllm_context * ctx, size_t scratch_floats, odllm_op * op);
/* Releases the lock odllm_context_begin took. */
void odllm_context_end(odllm_context * ctx);

#endif /* ODLLM_KERNELS_H */
