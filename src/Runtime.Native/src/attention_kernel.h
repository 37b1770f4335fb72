/*
 * The attend kernel, written once over primitives that each instruction-set file defines (static, inline) before
 * including this header, so every table runs the same algorithm and differs only in how a row is summed:
 *   float attn_dot_f32(const float * a, const float * b, int64_t d)        a·b
 *   float attn_dot_f16(const float * a, const uint16_t * b, int64_t d)     a·decode(b)
 *   void  attn_dot4_f32(const float * a, const float * b, int64_t ldb, int64_t d, float * out)
 *   void  attn_dot4_f16(const float * a, const uint16_t * b, int64_t ldb, int64_t d, float * out)
 *                                                                          out[r] = a·row r of b, r < 4, rows ldb apart
 *   void  attn_axpy_f32(float * y, float a, const float * x, int64_t d)    y += a·x
 *   void  attn_axpy_f16(float * y, float a, const uint16_t * x, int64_t d) y += a·decode(x)
 *   void  attn_axpy4_f32(float * y, const float * a, const float * x, int64_t ldx, int64_t d)
 *   void  attn_axpy4_f16(float * y, const float * a, const uint16_t * x, int64_t ldx, int64_t d)
 *                                                                          y += a[0]·x0, then a[1]·x1, a[2]·x2, a[3]·x3
 *   void  attn_decode_f16(const uint16_t * src, float * dst, int64_t d)
 *   void  attn_scale(float * y, float a, int64_t n)                        y *= a
 *   float attn_exp_sum(float * s, int64_t n, float max)                    s = exp(s - max); returns Σ s
 * The including file then instantiates ATTN_DEFINE(prefix).
 */
#ifndef ODLLM_ATTENTION_KERNEL_H
#define ODLLM_ATTENTION_KERNEL_H

#include <math.h>

#include "kernels.h"

/*
 * Heads of one group share every cache row: with more than this many, an f16 row is decoded once into task->row and
 * reused, instead of being decoded again inside each head's dot product.
 */
#define ATTN_DECODE_ONCE_HEADS 2

static ODLLM_ALWAYS_INLINE void attend_template(const odllm_attn_task * t, int f16) {
    const int64_t d = t->d, count = t->count, heads = t->heads, ld = t->ld;
    const int decode_once = f16 && heads > ATTN_DECODE_ONCE_HEADS;
    const uint16_t * k16 = t->k, * v16 = t->v;
    const float * k32 = t->k, * v32 = t->v;

    /* Scores, ODLLM_ATTN_KEY_BLOCK keys at a time: each query load serves four dot products. */
    int64_t j = 0;
    for (; j + ODLLM_ATTN_KEY_BLOCK <= count; j += ODLLM_ATTN_KEY_BLOCK) {
        if (decode_once)
            for (int r = 0; r < ODLLM_ATTN_KEY_BLOCK; r++) attn_decode_f16(k16 + (j + r) * ld, t->row + r * d, d);
        for (int64_t h = 0; h < heads; h++) {
            float * out = t->scores + h * count + j;
            if (!f16) attn_dot4_f32(t->q + h * d, k32 + j * ld, ld, d, out);
            else if (decode_once) attn_dot4_f32(t->q + h * d, t->row, d, d, out);
            else attn_dot4_f16(t->q + h * d, k16 + j * ld, ld, d, out);
        }
    }
    for (; j < count; j++)
        for (int64_t h = 0; h < heads; h++)
            t->scores[h * count + j] = f16 ? attn_dot_f16(t->q + h * d, k16 + j * ld, d) : attn_dot_f32(t->q + h * d, k32 + j * ld, d);

    for (int64_t h = 0; h < heads; h++) {
        float * s = t->scores + h * count;
        const float slope = t->slopes ? t->slopes[h] : 0.0f;
        float max = -INFINITY;
        for (int64_t i = 0; i < count; i++) {
            /* ALiBi is added to the raw q·k, before scaling (transformers' Falcon); +0 leaves the other models' dots as they are. */
            float score = (s[i] + slope * (float)(t->first_key + i)) * t->scale;
            if (t->softcap > 0) score = t->softcap * tanhf(score / t->softcap);
            s[i] = score;
            if (score > max) max = score;
        }
        /* Shifted by the maximum: exp of a raw score above ~88 overflows to infinity. */
        attn_scale(s, 1.0f / attn_exp_sum(s, count, max), count);
        memset(t->out + h * d, 0, (size_t)d * sizeof(float));
    }

    /* Values, four rows per pass over each output row: a quarter of the output loads and stores. */
    for (j = 0; j + ODLLM_ATTN_KEY_BLOCK <= count; j += ODLLM_ATTN_KEY_BLOCK) {
        if (decode_once)
            for (int r = 0; r < ODLLM_ATTN_KEY_BLOCK; r++) attn_decode_f16(v16 + (j + r) * ld, t->row + r * d, d);
        for (int64_t h = 0; h < heads; h++) {
            const float * p = t->scores + h * count + j;
            if (!f16) attn_axpy4_f32(t->out + h * d, p, v32 + j * ld, ld, d);
            else if (decode_once) attn_axpy4_f32(t->out + h * d, p, t->row, d, d);
            else attn_axpy4_f16(t->out + h * d, p, v16 + j * ld, ld, d);
        }
    }
    for (; j < count; j++)
        for (int64_t h = 0; h < heads; h++) {
            const float p = t->scores[h * count + j];
            if (f16) attn_axpy_f16(t->out + h * d, p, v16 + j * ld, d);
            else attn_axpy_f32(t->out + h * d, p, v32 + j * ld, d);
        }
}

#define ATTN_DEFINE(prefix)                                                                     \
    void prefix##_attend_f32(const odllm_attn_task * task) { attend_template(task, 0); }       \
    void prefix##_attend_f16(const odllm_attn_task * task) { attend_template(task, 1); }

#endif /* ODLLM_ATTENTION_KERNEL_H */
