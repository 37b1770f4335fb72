/*
 * Scalar reference kernels: the oracle every SIMD path is tested against, and the fallback on
 * CPUs without a SIMD table. Written to be obviously right, not fast.
 */
#include <math.h>

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

void odllm_ref_quantize_act(const float * x, int64_t k, int8_t * q, float * d) {
    for (int64_t b = 0; b < k / ODLLM_QK; b++) {
        const float * xb = x + b * ODLLM_QK;
        float amax = 0.0f;
        for (int t = 0; t < ODLLM_QK; t++) {
            float a = fabsf(xb[t]);
            if (a > amax) amax = a;
        }
        const float db = amax / 127.0f;
        const float id = db != 0.0f ? 1.0f / db : 0.0f;
        d[b] = db;
        /* nearbyintf rounds half to even in the default mode, as the SIMD converts and .NET's MathF.Round do. */
        for (int t = 0; t < ODLLM_QK; t++) q[b * ODLLM_QK + t] = (int8_t)nearbyintf(xb[t] * id);
    }
}

/* One block's products folded into the 8 lanes of the contract in kernels.h. */
static void accumulate_block(const int8_t * w, const int8_t * x, float c, float acc[8]) {
    for (int l = 0; l < 8; l++) {
        int32_t lane = 0;
        for (int t = 4 * l; t < 4 * l + 4; t++) lane += (int32_t)w[t] * (int32_t)x[t];
        acc[l] = fmaf((float)lane, c, acc[l]);
    }
}

static float reduce_lanes(const float acc[8]) {
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

void odllm_ref_gemm_q8_0(const int8_t * xq, const float * xd, int64_t m, const uint8_t * w, int64_t n, int64_t k,
                         float * y, int64_t ldy) {
    const int64_t nb = k / ODLLM_QK;
    for (int64_t j = 0; j < n; j++) {
        const uint8_t * row = w + j * nb * ODLLM_Q8_0_BYTES;
        for (int64_t i = 0; i < m; i++) {
            float acc[8] = { 0 };
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t * block = row + b * ODLLM_Q8_0_BYTES;
                const float dw = odllm_f16_to_f32(odllm_load_u16(block));
                accumulate_block((const int8_t *)(block + 2), xq + i * k + b * ODLLM_QK, dw * xd[i * nb + b], acc);
            }
            y[i * ldy + j] = reduce_lanes(acc);
        }
    }
}

void odllm_ref_gemm_q4_0(const int8_t * xq, const float * xd, int64_t m, const uint8_t * w, int64_t n, int64_t k,
                         float * y, int64_t ldy) {
    const int64_t nb = k / ODLLM_QK;
    int8_t unpacked[ODLLM_QK];
    for (int64_t j = 0; j < n; j++) {
        const uint8_t * row = w + j * nb * ODLLM_Q4_0_BYTES;
        for (int64_t i = 0; i < m; i++) {
            float acc[8] = { 0 };
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t * block = row + b * ODLLM_Q4_0_BYTES;
                for (int t = 0; t < ODLLM_QK / 2; t++) {
                    unpacked[t] = (int8_t)((block[2 + t] & 0x0F) - 8);
                    unpacked[t + ODLLM_QK / 2] = (int8_t)((block[2 + t] >> 4) - 8);
                }
                const float dw = odllm_f16_to_f32(odllm_load_u16(block));
                accumulate_block(unpacked, xq + i * k + b * ODLLM_QK, dw * xd[i * nb + b], acc);
            }
            y[i * ldy + j] = reduce_lanes(acc);
        }
    }
}

void odllm_ref_gemm_i8(const int8_t * xq, const float * xd, int64_t m, const int8_t * w, const uint8_t * scales,
                       int64_t n, int64_t k, float * y, int64_t ldy) {
    const int64_t nb = k / ODLLM_QK;
    for (int64_t j = 0; j < n; j++) {
        const int8_t * row = w + j * k;
        const float scale = odllm_load_f32(scales + j * 4);
        for (int64_t i = 0; i < m; i++) {
            float acc[8] = { 0 };
            for (int64_t b = 0; b < nb; b++)
                accumulate_block(row + b * ODLLM_QK, xq + i * k + b * ODLLM_QK, xd[i * nb + b], acc);
            y[i * ldy + j] = reduce_lanes(acc) * scale;
        }
    }
}

const odllm_kernel_table odllm_kernels_ref = {
    .name = "scalar",
    .gemm_f32 = gemm_f32,
    .gemv_f16 = gemv_f16,
    .gemv_bf16 = gemv_bf16,
    .f16_to_f32 = f16_to_f32,
    .bf16_to_f32 = bf16_to_f32,
    .quantize_act = odllm_ref_quantize_act,
    .gemm_q8_0 = odllm_ref_gemm_q8_0,
    .gemm_q4_0 = odllm_ref_gemm_q4_0,
    .gemm_i8 = odllm_ref_gemm_i8,
    .ops = &odllm_ops_ref,
    .attend_f32 = odllm_ref_attend_f32,
    .attend_f16 = odllm_ref_attend_f16,
};
