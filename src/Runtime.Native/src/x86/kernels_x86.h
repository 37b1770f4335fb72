/* Internal: kernels the plain AVX2 build (kernels_avx2.c) exports for the other x86 tables to reuse. */
#ifndef ODLLM_KERNELS_X86_H
#define ODLLM_KERNELS_X86_H

#include <stdint.h>

/* Float paths: AVX2 + FMA + F16C only, so every x86 table above AVX2 shares them. */
void odllm_avx2_gemm_f32(const float * x, int64_t ldx, int64_t m, const float * w, int64_t ldw,
                         int64_t n, int64_t k, float * y, int64_t ldy);
void odllm_avx2_gemv_f16(const float * x, const uint16_t * w, int64_t ldw, int64_t n, int64_t k, float * y);
void odllm_avx2_gemv_bf16(const float * x, const uint16_t * w, int64_t ldw, int64_t n, int64_t k, float * y);
void odllm_avx2_f16_to_f32(const uint16_t * src, float * dst, int64_t count);
void odllm_avx2_bf16_to_f32(const uint16_t * src, float * dst, int64_t count);
void odllm_avx2_quantize_act(const float * x, int64_t k, int8_t * q, float * d);

#endif /* ODLLM_KERNELS_X86_H */
