/*
 * Scalar reference kernels: the oracle every SIMD path is tested against, and the fallback on
 * CPUs without a SIMD table. Written to be obviously right, not fast.
 */
#include "../kernels.h"

static float dot_f32(const float * a, const float * b, int64_t k) {
    float sum = 0.0f;
    for (int64_t i = 0; i < k; i++) sum += a[i] * b[i];
    return sum;
}

static void gemm_f32(const float * x, int64_t ldx, int64_t m, const float * w, int64_t ldw,
                     int64_t n, int64_t k, float * y, int64_t ldy) {
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < m; i++)
            y[i * ldy + j] = dot_f32(x + i * ldx, w + j * ldw, k);
}

static void gemv_f16(const float * x, const uint16_t * w, int64_t ldw, int64_t n, int64_t k, float * y) {
    for (int64_t j = 0; j < n; j++) {
        const uint16_t * row = w + j * ldw;
        float sum = 0.0f;
        for (int64_t i = 0; i < k; i++) sum += odllm_f16_to_f32(row[i]) * x[i];
        y[j] = sum;
    }
}

static void gemv_bf16(const float * x, const uint16_t * w, int64_t ldw, int64_t n, int64_t k, float * y) {
    for (int64_t j = 0; j < n; j++) {
        const uint16_t * row = w + j * ldw;
        float sum = 0.0f;
        for (int64_t i = 0; i < k; i++) sum += odllm_bf16_to_f32(row[i]) * x[i];
        y[j] = sum;
    }
}

static void f16_to_f32(const uint16_t * src, float * dst, int64_t count) {
    for (int64_t i = 0; i < count; i++) dst[i] = odllm_f16_to_f32(src[i]);
}

static void bf16_to_f32(const uint16_t * src, float * dst, int64_t count) {
    for (int64_t i = 0; i < count; i++) dst[i] = odllm_bf16_to_f32(src[i]);
}

const odllm_kernel_table odllm_kernels_ref = {
    .name = "scalar",
    .gemm_f32 = gemm_f32,
    .gemv_f16 = gemv_f16,
    .gemv_bf16 = gemv_bf16,
    .f16_to_f32 = f16_to_f32,
    .bf16_to_f32 = bf16_to_f32,
};
