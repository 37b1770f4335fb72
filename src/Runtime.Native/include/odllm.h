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
#define ODLLM_ABI_VERSION 1

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
} odllm_isa;

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

/* Name of the kernel set in use: "avx512-vnni", "avx2-vnni", "avx2", "neon-dotprod", "neon" or "scalar"; "" for NULL. */
ODLLM_API const char * odllm_context_backend(const odllm_context * ctx);

/* Threads used per operator (the caller included); 0 for NULL. */
ODLLM_API int32_t odllm_context_n_threads(const odllm_context * ctx);

/* 1 when odllm_matmul implements weights of this type, 0 otherwise. */
ODLLM_API int32_t odllm_matmul_supports_type(int32_t w_type);

/*
 * y[m,n] = x[m,k] · Wᵀ, W stored [n,k] row-major as w_type; x, y row-major f32, not overlapping W.
 * INT8/Q8_0/Q4_0 need k % 32 == 0 (else ODLLM_ERR_INVALID_SIZE) and quantize each x row per block of
 * 32 to int8 (d = max|x|/127, q = x·(1/d) rounded half to even) before integer dot products; every
 * instruction set computes the same q and d, so results differ only in float summation order.
 */
ODLLM_API int32_t odllm_matmul(odllm_context * ctx, const float * x, int64_t m, int64_t k,
                               const void * w, int32_t w_type, int64_t n, float * y);

#ifdef __cplusplus
}
#endif

#endif /* ODLLM_H */
