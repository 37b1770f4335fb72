/*
 * odllm_attention through the public API: every instruction-set level this CPU offers, at 1..4 threads, against the
 * scalar reference and a double-precision oracle, over odd head sizes, positions, grouped/multi-query heads, ALiBi,
 * softcap, sliding windows and both cache types; scores far above exp's range; argument validation.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_RNG_SEED 0x2545F4914F6CDD1Dull
#include "test_util.h"

/* Round to nearest even binary16, for values well inside its normal range (the tests' cache values). */
static uint16_t to_half(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    const uint32_t sign = (bits >> 16) & 0x8000u;
    const int exp = (int)((bits >> 23) & 0xff) - 127 + 15;
    uint32_t mant = bits & 0x7fffffu;
    if (exp <= 0) return (uint16_t)sign; /* below 2^-14: flushed, never produced by the generators below */
    uint32_t half = ((uint32_t)exp << 10) | (mant >> 13);
    const uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++;
    return (uint16_t)(sign | half);
}

typedef struct attn_case {
    int64_t n, pos0;
    int32_t heads, kv_heads, d, window;
    int alibi;
    float softcap;
    float q_range; /* |q| up to this: large values push raw scores far beyond exp's range */
} attn_case;

/* The definition in double precision, from the same f32 queries and the cache's exact values. */
static void oracle(const attn_case * c, const odllm_attention_params * p, const float * q, const double * k,
                   const double * v, double * out) {
    const int64_t d = c->d, ld = (int64_t)c->kv_heads * d, group = c->heads / c->kv_heads;
    double * s = malloc(sizeof(double) * (size_t)(c->pos0 + c->n));
    for (int64_t t = 0; t < c->n; t++) {
        const int64_t pos = c->pos0 + t;
        const int64_t first = (c->window > 0 && pos - c->window + 1 > 0) ? pos - c->window + 1 : 0;
        for (int64_t h = 0; h < c->heads; h++) {
            const double * kh = k + (h / group) * d, * vh = v + (h / group) * d;
            const float * qh = q + (t * c->heads + h) * d;
            double max = -INFINITY, sum = 0;
            for (int64_t j = first; j <= pos; j++) {
                double dot = 0;
                for (int64_t i = 0; i < d; i++) dot += qh[i] * kh[j * ld + i];
                double score = (dot + (p->alibi_slopes ? p->alibi_slopes[h] * (double)j : 0)) * p->scale;
                if (c->softcap > 0) score = c->softcap * tanh(score / c->softcap);
                s[j] = score;
                if (score > max) max = score;
            }
            for (int64_t j = first; j <= pos; j++) sum += (s[j] = exp(s[j] - max));
            double * oh = out + (t * c->heads + h) * d;
            for (int64_t i = 0; i < d; i++) {
                double acc = 0;
                for (int64_t j = first; j <= pos; j++) acc += s[j] / sum * vh[j * ld + i];
                oh[i] = acc;
            }
        }
    }
    free(s);
}

static void check_case(const attn_case * c, int kv_type) {
    const int64_t positions = c->pos0 + c->n, d = c->d;
    const size_t q_count = (size_t)(c->n * c->heads * d), kv_count = (size_t)(positions * c->kv_heads * d);
    float * q = malloc(q_count * sizeof(float));
    double * kd = malloc(kv_count * sizeof(double)), * vd = malloc(kv_count * sizeof(double));
    void * k = malloc(kv_count * 4), * v = malloc(kv_count * 4);
    double * expected = malloc(q_count * sizeof(double));
    float * reference = malloc(q_count * sizeof(float)), * out = malloc(q_count * sizeof(float));
    float * slopes = malloc((size_t)c->heads * sizeof(float));
    for (size_t i = 0; i < q_count; i++) q[i] = rng_float() * c->q_range;
    for (size_t i = 0; i < kv_count; i++) {
        const float kf = rng_float(), vf = rng_float();
        if (kv_type == ODLLM_TYPE_F16) {
            ((uint16_t *)k)[i] = to_half(kf);
            ((uint16_t *)v)[i] = to_half(vf);
            kd[i] = half_value(((uint16_t *)k)[i]);
            vd[i] = half_value(((uint16_t *)v)[i]);
        } else {
            ((float *)k)[i] = kf;
            ((float *)v)[i] = vf;
            kd[i] = kf;
            vd[i] = vf;
        }
    }
    for (int h = 0; h < c->heads; h++) slopes[h] = -0.25f / (float)(h + 1);
    odllm_attention_params p = {
        .alibi_slopes = c->alibi ? slopes : NULL,
        .n_queries = c->n, .pos0 = c->pos0, .kv_positions = positions,
        .n_heads = c->heads, .n_kv_heads = c->kv_heads, .head_dim = c->d,
        .kv_type = kv_type, .window = c->window,
        .scale = 1.0f / sqrtf((float)c->d), .softcap = c->softcap,
    };
    oracle(c, &p, q, kd, vd, expected);

    char what[160];
    snprintf(what, sizeof what, "%s n=%lld pos0=%lld H=%d Hkv=%d d=%d window=%d alibi=%d softcap=%g |q|<=%g",
             kv_type == ODLLM_TYPE_F16 ? "f16" : "f32", (long long)c->n, (long long)c->pos0, c->heads, c->kv_heads,
             c->d, c->window, c->alibi, c->softcap, c->q_range);
    for (int b = 0; b < n_backends; b++) {
        for (size_t i = 0; i < q_count; i++) out[i] = NAN;
        int status = odllm_attention(backends[b].ctx, &p, q, k, v, out);
        CHECK(status == ODLLM_OK, "%s on %s/%d: %s", what, odllm_context_backend(backends[b].ctx), backends[b].threads,
              odllm_status_string(status));
        if (status != ODLLM_OK) continue;
        if (b == 0) memcpy(reference, out, q_count * sizeof(float));
        double worst_oracle = 0, worst_reference = 0;
        for (size_t i = 0; i < q_count; i++) {
            const double e_oracle = fabs(out[i] - expected[i]), e_ref = fabs((double)out[i] - reference[i]);
            /* NaN compares false: the !(<=) form counts it as the worst error. */
            if (!(e_oracle <= worst_oracle)) worst_oracle = e_oracle;
            if (!(e_ref <= worst_reference)) worst_reference = e_ref;
        }
        /* Outputs are convex combinations of values in [-1, 1]: absolute errors, growing with the scores' size, whose
         * f32 rounding the softmax amplifies. Instruction sets differ only in summation order and exp's last ulps.
         * Measured on AVX2: at most 1.2e-7 from the oracle and 1.8e-7 from scalar for |q| <= 1, 1.6e-6 for |q| <= 40. */
        const double tol_oracle = 2e-6 * (1 + c->q_range), tol_ref = 1e-6 * (1 + c->q_range);
        CHECK(worst_oracle <= tol_oracle, "%s on %s/%d: max |out - oracle| %g", what, odllm_context_backend(backends[b].ctx),
              backends[b].threads, worst_oracle);
        CHECK(worst_reference <= tol_ref, "%s on %s/%d: max |out - scalar| %g", what, odllm_context_backend(backends[b].ctx),
              backends[b].threads, worst_reference);
    }
    free(q); free(kd); free(vd); free(k); free(v); free(expected); free(reference); free(out); free(slopes);
}

static void test_shapes(void) {
    const attn_case cases[] = {
        /* decode, MHA, the head sizes real models use and odd ones around the SIMD widths */
        { 1, 0, 4, 4, 64, 0, 0, 0, 1 },
        { 1, 37, 12, 12, 64, 0, 0, 0, 1 },
        { 1, 50, 3, 3, 1, 0, 0, 0, 1 },
        { 1, 50, 3, 3, 7, 0, 0, 0, 1 },
        { 1, 23, 5, 5, 17, 0, 0, 0, 1 },
        { 1, 60, 2, 2, 33, 0, 0, 0, 1 },
        /* grouped and multi-query heads, decode and prefill, prefill after a cached prefix */
        { 1, 41, 8, 2, 32, 0, 0, 0, 1 },
        { 1, 41, 8, 1, 256, 0, 0, 0, 1 },
        { 1, 19, 6, 1, 67, 0, 0, 0, 1 },
        { 7, 0, 8, 2, 24, 0, 0, 0, 1 },
        { 5, 13, 6, 3, 80, 0, 0, 0, 1 },
        { 9, 3, 4, 1, 19, 0, 0, 0, 1 },
        { 3, 30, 9, 3, 128, 0, 0, 0, 1 },
        /* ALiBi (Falcon-RW), softcap and sliding window (Gemma 2), and all together */
        { 6, 11, 4, 4, 16, 0, 1, 0, 1 },
        { 1, 70, 5, 5, 21, 0, 1, 0, 1 },
        { 5, 7, 4, 2, 32, 0, 0, 5.0f, 3 },
        { 8, 20, 4, 2, 32, 8, 0, 0, 1 },
        { 1, 40, 4, 2, 32, 8, 0, 5.0f, 1 },
        { 11, 0, 6, 2, 13, 4, 1, 2.5f, 2 },
        { 4, 2, 2, 1, 9, 100, 0, 0, 1 },
        /* raw scores in the hundreds: exp overflows unless the maximum is subtracted first */
        { 3, 20, 4, 2, 64, 0, 0, 0, 40 },
        { 2, 9, 3, 1, 31, 0, 1, 0, 25 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_case(&cases[i], ODLLM_TYPE_F32);
        check_case(&cases[i], ODLLM_TYPE_F16);
    }
}

static void test_validation(void) {
    odllm_context * ctx = backends[0].ctx;
    float q[8] = { 0 }, k[8] = { 0 }, v[8] = { 0 }, out[8];
    const odllm_attention_params good = {
        .n_queries = 1, .pos0 = 1, .kv_positions = 2, .n_heads = 2, .n_kv_heads = 1, .head_dim = 2,
        .kv_type = ODLLM_TYPE_F32, .scale = 1.0f,
    };
    CHECK(odllm_attention(ctx, &good, q, k, v, out) == ODLLM_OK, "a valid call");
    CHECK(odllm_attention(NULL, &good, q, k, v, out) == ODLLM_ERR_NULL_POINTER, "NULL context");
    CHECK(odllm_attention(ctx, NULL, q, k, v, out) == ODLLM_ERR_NULL_POINTER, "NULL params");
    CHECK(odllm_attention(ctx, &good, NULL, k, v, out) == ODLLM_ERR_NULL_POINTER, "NULL q");
    CHECK(odllm_attention(ctx, &good, q, NULL, v, out) == ODLLM_ERR_NULL_POINTER, "NULL k");
    CHECK(odllm_attention(ctx, &good, q, k, NULL, out) == ODLLM_ERR_NULL_POINTER, "NULL v");
    CHECK(odllm_attention(ctx, &good, q, k, v, NULL) == ODLLM_ERR_NULL_POINTER, "NULL out");

    odllm_attention_params p;
#define EXPECT(field, value, status)                                                                   \
    do {                                                                                                \
        p = good;                                                                                       \
        p.field = value;                                                                                \
        int got = odllm_attention(ctx, &p, q, k, v, out);                                               \
        CHECK(got == (status), #field " = " #value ": status %d (%s)", got, odllm_status_string(got)); \
    } while (0)
    EXPECT(n_queries, 0, ODLLM_ERR_INVALID_SIZE);
    EXPECT(n_queries, -1, ODLLM_ERR_INVALID_SIZE);
    EXPECT(pos0, -1, ODLLM_ERR_INVALID_SIZE);
    EXPECT(pos0, 2, ODLLM_ERR_INVALID_SIZE); /* the cache holds 2 positions; the query would need 3 */
    EXPECT(kv_positions, 1, ODLLM_ERR_INVALID_SIZE);
    EXPECT(n_heads, 0, ODLLM_ERR_INVALID_SIZE);
    EXPECT(n_kv_heads, 4, ODLLM_ERR_INVALID_SIZE); /* 2 query heads cannot share 4 KV heads */
    EXPECT(n_kv_heads, 0, ODLLM_ERR_INVALID_SIZE);
    EXPECT(n_kv_heads, -2, ODLLM_ERR_INVALID_SIZE);
    EXPECT(head_dim, 0, ODLLM_ERR_INVALID_SIZE);
    EXPECT(window, -1, ODLLM_ERR_INVALID_SIZE);
    EXPECT(scale, NAN, ODLLM_ERR_INVALID_SIZE);
    EXPECT(scale, INFINITY, ODLLM_ERR_INVALID_SIZE);
    EXPECT(softcap, -1.0f, ODLLM_ERR_INVALID_SIZE);
    EXPECT(softcap, NAN, ODLLM_ERR_INVALID_SIZE);
    EXPECT(kv_type, -1, ODLLM_ERR_UNKNOWN_TYPE);
    EXPECT(kv_type, 99, ODLLM_ERR_UNKNOWN_TYPE);
    EXPECT(kv_type, ODLLM_TYPE_BF16, ODLLM_ERR_UNSUPPORTED_TYPE);
    EXPECT(kv_type, ODLLM_TYPE_Q8_0, ODLLM_ERR_UNSUPPORTED_TYPE);
    EXPECT(n_queries, INT64_MAX, ODLLM_ERR_OVERFLOW);
    EXPECT(kv_positions, INT64_MAX / 2, ODLLM_ERR_OVERFLOW);
#undef EXPECT
}

int main(void) {
    create_backends();
    if (n_backends > 0) {
        test_shapes();
        test_validation();
    }
    free_backends();
    if (failures) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all attention checks passed\n");
    return 0;
}
