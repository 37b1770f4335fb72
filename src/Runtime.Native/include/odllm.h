/*
 * odllm.h - the C ABI of the OnDeviceLlm kernel library (libodllm).
 *
 * Pure compute: no file I/O, no policy. Every function validates its arguments and returns an
 * odllm_status; none aborts on bad input. A context owns a thread pool and scratch memory;
 * calls on one context are serialized internally, so a context may be shared between threads,
 * but independent work in parallel needs one context per caller.
 */
#ifndef ODLLM_H
#define ODLLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef _WIN32
#  ifdef ODLLM_BUILDING
#    define ODLLM_API __declspec(dllexport)
#  else
#    define ODLLM_API __declspec(dllimport)
#  endif
#else
#  define ODLLM_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a signature or a struct layout below changes; bindings refuse a mismatch. */
#define ODLLM_ABI_VERSION 3

typedef enum odllm_status {
    ODLLM_OK = 0,
    ODLLM_ERR_NULL_POINTER = 1,      /* a required pointer argument is NULL */
    ODLLM_ERR_INVALID_SIZE = 2,      /* a size or count is zero, negative or out of range */
    ODLLM_ERR_OVERFLOW = 3,          /* a size product does not fit in memory addressing */
    ODLLM_ERR_UNKNOWN_TYPE = 4,      /* a tensor type value outside odllm_type */
    ODLLM_ERR_UNSUPPORTED_TYPE = 5,  /* a known tensor type this operator does not implement yet */
    ODLLM_ERR_UNSUPPORTED_ISA = 6,   /* the requested instruction set is not available on this CPU/build */
    ODLLM_ERR_OUT_OF_MEMORY = 7,     /* an allocation failed */
    ODLLM_ERR_THREAD = 8,            /* a worker thread could not be started */
    ODLLM_ERR_INVALID_ARGUMENT = 9,  /* an enum value outside its range, or a float parameter that is NaN, infinite or out of range */
} odllm_status;

/* Tensor storage types; the numbering is the C# TensorType's and is stored in model files. */
typedef enum odllm_type {
    ODLLM_TYPE_F32 = 0,   /* IEEE binary32 */
    ODLLM_TYPE_F16 = 1,   /* IEEE binary16 */
    ODLLM_TYPE_BF16 = 2,  /* bfloat16: the high half of a binary32 */
    ODLLM_TYPE_INT8 = 3,  /* planar: n rows of k int8 row-major, then n f32 row scales */
    ODLLM_TYPE_Q8_0 = 4,  /* blocks of 32: f16 scale + 32 int8 (GGUF Q8_0) */
    ODLLM_TYPE_Q4_0 = 5,  /* blocks of 32: f16 scale + 16 bytes of nibbles (GGUF Q4_0) */
} odllm_type;

/* Instruction-set levels a context may be asked to use. */
typedef enum odllm_isa {
    ODLLM_ISA_BEST = 0,    /* the best level this CPU supports */
    ODLLM_ISA_SCALAR = 1,  /* the portable C reference kernels */
    ODLLM_ISA_AVX2 = 2,    /* x86-64 AVX2 + FMA + F16C */
    ODLLM_ISA_NEON = 3,    /* AArch64 Advanced SIMD */
    ODLLM_ISA_NEON_DOTPROD = 4, /* AArch64 Advanced SIMD + dotprod (sdot) */
    ODLLM_ISA_AVX2_VNNI = 5, /* x86-64 AVX2 + FMA + F16C + AVX-VNNI (vpdpbusd) */
    ODLLM_ISA_AVX512_VNNI = 6, /* x86-64 AVX2 + FMA + F16C + AVX-512 F/BW/VL + AVX512-VNNI */
    ODLLM_ISA_NEON_I8MM = 7, /* AArch64 Advanced SIMD + dotprod + I8MM (smmla) */
} odllm_isa;

/* Feed-forward activations; the numbering is the C# Activation's. */
typedef enum odllm_activation {
    ODLLM_ACT_SILU = 0,       /* x · sigmoid(x) */
    ODLLM_ACT_GELU_TANH = 1,  /* 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) */
    ODLLM_ACT_GELU_ERF = 2,   /* 0.5·x·(1 + erf(x/√2)) */
} odllm_activation;

typedef struct odllm_context odllm_context;

typedef struct odllm_context_params {
    int32_t n_threads;  /* threads per operator, the caller included; 0 = physical cores; clamped to 1..256 */
    int32_t isa;        /* an odllm_isa; anything but BEST fails with ODLLM_ERR_UNSUPPORTED_ISA when unavailable */
} odllm_context_params;

/* The ABI version this library was built with (ODLLM_ABI_VERSION). */
ODLLM_API int32_t odllm_abi_version(void);

/* A short English sentence describing a status code; never NULL. */
ODLLM_API const char * odllm_status_string(int32_t status);

/* Defaults: physical-core thread count, best instruction set. */
ODLLM_API odllm_context_params odllm_context_default_params(void);

/* Creates a context (kernel table + thread pool) into *out; *out is NULL on failure. */
ODLLM_API int32_t odllm_context_create(const odllm_context_params * params, odllm_context ** out);

/* Stops the thread pool and frees the context; NULL is ignored. */
ODLLM_API void odllm_context_free(odllm_context * ctx);

/* Name of the kernel set in use: "avx512-vnni", "avx2-vnni", "avx2", "neon-i8mm", "neon-dotprod", "neon" or "scalar"; "" for NULL. */
ODLLM_API const char * odllm_context_backend(const odllm_context * ctx);

/* Threads used per operator (the caller included); 0 for NULL. */
ODLLM_API int32_t odllm_context_n_threads(const odllm_context * ctx);

/* 1 when odllm_matmul implements weights of this type, 0 otherwise. */
ODLLM_API int32_t odllm_matmul_supports_type(int32_t w_type);

/*
 * y[m,n] = x[m,k] · Wᵀ, W stored [n,k] row-major as w_type; x, y row-major f32, not overlapping W.
 * INT8/Q8_0/Q4_0 need k % 32 == 0 (else ODLLM_ERR_INVALID_SIZE) and quantize each x row per block of
 * 32 to int8 (d = max|x|/127, q = x·(1/d) rounded half to even) before integer dot products; every
 * instruction set computes the same q and d, so results differ only in float summation order (and not at all between
 * tables, except neon-i8mm's prefill: see kernels.h).
 */
ODLLM_API int32_t odllm_matmul(odllm_context * ctx, const float * x, int64_t m, int64_t k,
                               const void * w, int32_t w_type, int64_t n, float * y);

/*
 * Element-wise and row-wise operators of the forward pass, f32 in and out. Rows are split over the
 * context's threads when a call is large enough to pay for waking them (prefill), else run on the caller.
 * An output may be the very same buffer as an input (in place) but must not partially overlap one.
 * Every instruction set returns the same bits, whatever the thread count: exp, tanh and erf are fixed
 * polynomial approximations (within 1e-6 + 2e-7·|exact|) evaluated in one order (src/kernels.h).
 */

/* y[i,:] = x[i,:] · 1/sqrt(mean(x[i,:]²) + eps) · (w_offset + w[i % w_rows, :]) for i < n; w_offset 1 is Gemma's (1 + w). */
ODLLM_API int32_t odllm_rms_norm(odllm_context * ctx, const float * x, int64_t n, int64_t dim,
                                 const float * w, int64_t w_rows, float w_offset, float eps, float * y);

/* y[i,:] = (x[i,:] − mean) · 1/sqrt(variance + eps) · w[r,:] + b[r,:], r = i % w_rows; b may be NULL (no bias). */
ODLLM_API int32_t odllm_layer_norm(odllm_context * ctx, const float * x, int64_t n, int64_t dim,
                                   const float * w, const float * b, int64_t w_rows, float eps, float * y);

/* cos/sin[t*half + i] = cos/sin(angle) of the f32 angle (float)(pos0 + t) · inv_freq[i], taken in double, t < n, i < half. */
ODLLM_API int32_t odllm_rope_tables(int64_t pos0, int64_t n, const float * inv_freq, int64_t half,
                                    float * cos, float * sin);

/* Rotates dims (i, i + rotary_dim/2), i < rotary_dim/2, of each head of x[n, heads, head_dim] (rotate_half/NeoX pairing) by row t of cos/sin [n, rotary_dim/2]. */
ODLLM_API int32_t odllm_rope(odllm_context * ctx, float * x, int64_t n, int64_t heads, int64_t head_dim,
                             int64_t rotary_dim, const float * cos, const float * sin);

/* y[i] = act(x[i]) for i < count, act an odllm_activation. */
ODLLM_API int32_t odllm_activate(odllm_context * ctx, int32_t act, const float * x, int64_t count, float * y);

/* y[i] = act(gate[i]) · up[i] for i < count (GeGLU, SwiGLU). */
ODLLM_API int32_t odllm_gated_activate(odllm_context * ctx, int32_t act, const float * gate, const float * up,
                                       int64_t count, float * y);

/* y[i] = a[i] + b[i] for i < count (residual connections). */
ODLLM_API int32_t odllm_add(odllm_context * ctx, const float * a, const float * b, int64_t count, float * y);

/* y[i] = cap · tanh(x[i] / cap) for i < count, cap > 0 (Gemma 2's final logit soft-capping). */
ODLLM_API int32_t odllm_softcap(odllm_context * ctx, const float * x, int64_t count, float cap, float * y);
/* ---- Attention ---- */

/* Shape and options of odllm_attention; zero-initialize, then set what applies. */
typedef struct odllm_attention_params {
    const float * alibi_slopes; /* NULL, or n_heads slopes: slope·j is added to q·k of key position j before the scale */
    int64_t n_queries;          /* query rows, at positions pos0 .. pos0 + n_queries - 1 */
    int64_t pos0;               /* position of the first query row */
    int64_t kv_positions;       /* positions k and v hold, at least pos0 + n_queries (only those are read) */
    int32_t n_heads;            /* query heads H */
    int32_t n_kv_heads;         /* KV heads, dividing H: query head h reads KV head h / (H / n_kv_heads) */
    int32_t head_dim;           /* d */
    int32_t kv_type;            /* ODLLM_TYPE_F32 or ODLLM_TYPE_F16 */
    int32_t window;             /* > 0: the query at pos sees keys pos - window < j <= pos (sliding window); 0: all j <= pos */
    float scale;                /* multiplies q·k (plus ALiBi); finite */
    float softcap;              /* > 0: each score s becomes softcap·tanh(s / softcap) (Gemma 2); 0: off */
} odllm_attention_params;

/*
 * Causal attention of n_queries rows over a KV cache: out[t, h] = Σ_j softmax_j(score(t, h, j)) · v[j, h / (H / Hkv)],
 * score = (q[t, h]·k[j, h / (H / Hkv)] + slope_h·j) · scale (then softcapped), the softmax shifted by its maximum.
 * q and out are [n_queries, H, d] f32; k and v are [kv_positions, Hkv, d] of kv_type, row-major; out overlaps nothing.
 * Non-finite scale or a negative/non-finite softcap give ODLLM_ERR_INVALID_SIZE.
 */
ODLLM_API int32_t odllm_attention(odllm_context * ctx, const odllm_attention_params * params, const float * q,
                                  const void * k, const void * v, float * out);

#ifdef __cplusplus
}
#endif

#endif /* ODLLM_H */
