/*
 * The attend kernel, written once over primitives that each instruction-set file defines (static, inline) before
 * including this header, so every table runs the same algorithm and differs only in how a row is summed:
 *   float attn_dot_f32(const float * a, const float * b, int64_t d)        a·b
 *   float attn_dot_f16(const float * a, const uint16_t * b, int64_t d)     a·decode(b)
 *   void  attn_axpy_f32(float * y, float a, const float * x, int64_t d)    y += a·x
 *   void  attn_axpy_f16(float * y, float a, const uint16_t * x, int64_t d) y += a·decode(x)
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

    for (int64_t j = 0; j < count; j++) {
        const float * key = NULL;
        const uint16_t * key16 = NULL;
        if (!f16) key = (const float *)t->k + j * ld;
        else if (decode_once) { attn_decode_f16((const uint16_t *)t->k + j * ld, t->row, d); key = t->row; }
        else key16 = (const uint16_t *)t->k + j * ld;
        for (int64_t h = 0; h < heads; h++)
            t->scores[h * count + j] = key ? attn_dot_f32(t->q + h * d, key, d) : attn_dot_f16(t->q + h * d, key16, d);
    }

    for (int64_t h = 0; h < heads; h++) {
        float * s = t->scores + h * count;
        const float slope = t->slopes ? t->slopes[h] : 0.0f;
        float max = -INFINITY;
        for (int64_t j = 0; j < count; j++) {
            /* ALiBi is added to the raw q·k, before scaling (transformers' Falcon); +0 leaves the other models' dots as they are. */
            float score = (s[j] + slope * (float)(t->first_key + j)) * t->scale;
            if (t->softcap > 0) score = t->softcap * tanhf(score / t->softcap);
            s[j] = score;
            if (score > max) max = score;
        }
        /* Shifted by the maximum: exp of a raw score above ~88 overflows to infinity. */
        attn_scale(s, 1.0f / attn_exp_sum(s, count, max), count);
        memset(t->out + h * d, 0, (size_t)d * sizeof(float));
    }

    for (int64_t j = 0; j < count; j++) {
        if (!f16) {
            const float * value = (const float *)t->v + j * ld;
            for (int64_t h = 0; h < heads; h++) attn_axpy_f32(t->out + h * d, t->scores[h * count + j], value, d);
        } else if (decode_once) {
            attn_decode_f16((const uint16_t *)t->v + j * ld, t->row, d);
            for (int64_t h = 0; h < heads; h++) attn_axpy_f32(t->out + h * d, t->scores[h * count + j], t->row, d);
        } else {
            const uint16_t * value = (const uint16_t *)t->v + j * ld;
            for (int64_t h = 0; h < heads; h++) attn_axpy_f16(t->out + h * d, t->scores[h * count + j], value, d);
        }
    }
}

#define ATTN_DEFINE(prefix)                                                                     \
    void prefix##_attend_f32(const odllm_attn_task * task) { attend_template(task, 0); }       \
    void prefix##_attend_f16(const odllm_attn_task * task) { attend_template(task, 1); }

#endif /* ODLLM_ATTENTION_KERNEL_H */
