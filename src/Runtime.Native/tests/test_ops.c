/*
 * Tests of the element-wise and row-wise operators through the public API. Every instruction-set level this
 * CPU offers, at 1..4 threads, must return the scalar level's bits (the float contract of src/kernels.h) on
 * random data of odd sizes, large enough that the threaded split happens, in place or not. The scalar level is
 * checked against double-precision formulas (libm's exp, tanh, erf) within these bounds:
 *   silu, gelu_tanh, gelu_erf, softcap 1e-6 + 2e-7 × |exact| (gated: act's bound × |up| plus one rounding)
 *   rms_norm, layer_norm               1e-6 × (1 + |exact|)
 *   rope                               3e-7 × (|x1| + |x2|) of the pair
 * Plus special values (±0, huge, ±inf, NaN) and argument validation.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_RNG_SEED 0x243F6A8885A308D3ull
#include "test_util.h"

/* Uniform in [-scale, scale). */
static float rng_scaled(float scale) { return (float)(((rng_next() & 0xFFFFFF) / 8388608.0 - 1.0) * scale); }

static void fill(float * x, int64_t count, float scale) {
    for (int64_t i = 0; i < count; i++) x[i] = rng_scaled(scale);
}

static float * alloc_floats(int64_t count) {
    float * p = malloc((size_t)count * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static odllm_context * scalar = NULL; /* the scalar level on one thread: the reference */

/* Bit for bit, except that any NaN matches any NaN (payloads are not part of the contract). */
static int same_values(const float * got, const float * want, int64_t count) {
    for (int64_t i = 0; i < count; i++) {
        if (isnan(got[i]) && isnan(want[i])) continue;
        if (memcmp(got + i, want + i, sizeof(float)) != 0) {
            fprintf(stderr, "  [%lld of %lld]: %.9g vs %.9g\n", (long long)i, (long long)count, got[i], want[i]);
            return 0;
        }
    }
    return 1;
}

/* Tracks the worst error relative to its bound; checks it. */
static void within(double got, double exact, double bound, double * worst, const char * what, double input) {
    const double err = fabs(got - exact);
    CHECK(err <= bound, "%s(%.9g) = %.9g, exact %.9g (bound %.3g)", what, input, got, exact, bound);
    if (bound > 0 && err / bound > *worst) *worst = err / bound;
}

static const char * act_name(int act) {
    return act == ODLLM_ACT_SILU ? "silu" : act == ODLLM_ACT_GELU_TANH ? "gelu_tanh" : "gelu_erf";
}

static double act_oracle(int act, double x) {
    switch (act) {
    case ODLLM_ACT_SILU: return x / (1.0 + exp(-x));
    case ODLLM_ACT_GELU_TANH: return 0.5 * x * (1.0 + tanh(0.79788456080286536 * (x + 0.044715 * x * x * x)));
    default: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    }
}

/* Random values over [-12, 12] with some much larger ones and the special values at the front. */
static void fill_activation_inputs(float * x, int64_t count) {
    static const float specials[] = { 0.0f, -0.0f, 1e-30f, -1e-30f, 1e-8f, -1e-8f, 0.6249f, -0.6251f, 9.0f, -9.0f,
                                      20.0f, -20.0f, 87.0f, -87.0f, 89.0f, -89.0f, 100.0f, -100.0f, 1e4f, -1e4f,
                                      3e38f, -3e38f, INFINITY, -INFINITY };
    for (int64_t i = 0; i < count; i++) {
        const uint32_t r = rng_next() % 16;
        x[i] = r == 0 ? rng_scaled(200.0f) : r == 1 ? rng_scaled(1.0f) : rng_scaled(12.0f);
    }
    for (size_t i = 0; i < sizeof specials / sizeof specials[0] && (int64_t)i < count; i++) x[i] = specials[i];
}

static const int64_t element_counts[] = { 1, 3, 7, 8, 9, 17, 31, 33, 100, 1023, 4097, 16385, 70001 };

static void test_activations(void) {
    double worst[3] = { 0, 0, 0 }, worst_gated = 0;
    for (size_t c = 0; c < sizeof element_counts / sizeof element_counts[0]; c++) {
        const int64_t count = element_counts[c];
        float * x = alloc_floats(count), * up = alloc_floats(count), * want = alloc_floats(count);
        float * got = alloc_floats(count), * single = alloc_floats(count);
        fill_activation_inputs(x, count);
        fill(up, count, 3.0f);
        for (int act = ODLLM_ACT_SILU; act <= ODLLM_ACT_GELU_ERF; act++) {
            for (int gated = 0; gated <= 1; gated++) {
                int status = gated ? odllm_gated_activate(scalar, act, x, up, count, want)
                                   : odllm_activate(scalar, act, x, count, want);
                CHECK(status == ODLLM_OK, "scalar %s: %s", act_name(act), odllm_status_string(status));
                /* The contract against the formula in double (the gated bound: act's, times |up|, plus one product rounding). */
                for (int64_t i = 0; i < count; i++) {
                    if (!isfinite(x[i]) || fabsf(x[i]) > 1e30f) continue;
                    const double exact = act_oracle(act, x[i]);
                    if (gated)
                        within(want[i], exact * up[i], (1e-6 + 2e-7 * fabs(exact)) * fabs(up[i]) + 1.2e-7 * fabs(exact * up[i]),
                               &worst_gated, act_name(act), x[i]);
                    else
                        within(want[i], exact, 1e-6 + 2e-7 * fabs(exact), &worst[act], act_name(act), x[i]);
                }
                for (int b = 0; b < n_backends; b++) {
                    odllm_context * ctx = backends[b].ctx;
                    memset(got, 0xff, (size_t)count * sizeof(float));
                    status = gated ? odllm_gated_activate(ctx, act, x, up, count, got) : odllm_activate(ctx, act, x, count, got);
                    CHECK(status == ODLLM_OK, "%s: %s", act_name(act), odllm_status_string(status));
                    CHECK(same_values(got, want, count), "%s%s %s/%d differs from scalar (count %lld)", gated ? "gated " : "",
                          act_name(act), odllm_context_backend(ctx), backends[b].threads, (long long)count);
                }
            }
            /* In place: y is x. */
            for (int b = 0; b < n_backends; b++) {
                odllm_context * ctx = backends[b].ctx;
                odllm_activate(ctx, act, x, count, single);
                memcpy(got, x, (size_t)count * sizeof(float));
                odllm_activate(ctx, act, got, count, got);
                CHECK(same_values(got, single, count), "%s in place %s/%d", act_name(act), odllm_context_backend(ctx),
                      backends[b].threads);
            }
        }
        /* NaN in, NaN out. */
        x[0] = NAN;
        for (int b = 0; b < n_backends; b++)
            for (int act = ODLLM_ACT_SILU; act <= ODLLM_ACT_GELU_ERF; act++) {
                odllm_activate(backends[b].ctx, act, x, count, got);
                CHECK(isnan(got[0]), "%s(NaN) = %g on %s", act_name(act), got[0], odllm_context_backend(backends[b].ctx));
            }
        free(x); free(up); free(want); free(got); free(single);
    }
    printf("activations vs double: worst error / bound: silu %.3f, gelu_tanh %.3f, gelu_erf %.3f, gated %.3f\n",
           worst[ODLLM_ACT_SILU], worst[ODLLM_ACT_GELU_TANH], worst[ODLLM_ACT_GELU_ERF], worst_gated);
}

static void test_softcap_and_add(void) {
    double worst = 0;
    for (size_t c = 0; c < sizeof element_counts / sizeof element_counts[0]; c++) {
        const int64_t count = element_counts[c];
        float * x = alloc_floats(count), * b2 = alloc_floats(count), * want = alloc_floats(count);
        float * got = alloc_floats(count), * single = alloc_floats(count);
        fill_activation_inputs(x, count);
        for (int64_t i = 0; i < count; i++) x[i] = isfinite(x[i]) ? x[i] * 5.0f : x[i]; /* logits reach the hundreds */
        fill(b2, count, 10.0f);
        const float caps[] = { 30.0f, 50.0f, 1.0f };
        for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
            int status = odllm_softcap(scalar, x, count, caps[k], want);
            CHECK(status == ODLLM_OK, "softcap: %s", odllm_status_string(status));
            for (int64_t i = 0; i < count; i++) {
                if (isnan(x[i])) continue;
                const double exact = caps[k] * tanh((double)(x[i] / caps[k]));
                within(want[i], exact, 1e-6 + 2e-7 * fabs(exact), &worst, "softcap", x[i]);
            }
            for (int b = 0; b < n_backends; b++) {
                odllm_context * ctx = backends[b].ctx;
                odllm_softcap(ctx, x, count, caps[k], got);
                CHECK(same_values(got, want, count), "softcap %s/%d differs from scalar", odllm_context_backend(ctx),
                      backends[b].threads);
                memcpy(single, x, (size_t)count * sizeof(float));
                odllm_softcap(ctx, single, count, caps[k], single);
                CHECK(same_values(got, single, count), "softcap in place %s/%d", odllm_context_backend(ctx), backends[b].threads);
            }
        }
        for (int64_t i = 0; i < count; i++) want[i] = x[i] + b2[i];
        for (int b = 0; b < n_backends; b++) {
            odllm_context * ctx = backends[b].ctx;
            int status = odllm_add(ctx, x, b2, count, got);
            CHECK(status == ODLLM_OK && same_values(got, want, count), "add %s/%d count %lld", odllm_context_backend(ctx),
                  backends[b].threads, (long long)count);
            memcpy(single, x, (size_t)count * sizeof(float));
            odllm_add(ctx, single, b2, count, single);
            CHECK(same_values(single, want, count), "add in place %s/%d", odllm_context_backend(ctx), backends[b].threads);
        }
        free(x); free(b2); free(want); free(got); free(single);
    }
    printf("softcap vs double: worst error / bound %.3f\n", worst);
}

static void test_norms(void) {
    static const int64_t dims[] = { 1, 2, 7, 8, 31, 33, 64, 257, 2048, 2049 };
    static const int64_t rows[] = { 1, 3, 40 };
    double worst_rms = 0, worst_layer = 0;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
            const int64_t dim = dims[di], n = rows[ri], count = n * dim;
            /* Per-head weights (one row per head, as StableLM's qk-norm) when the rows allow it. */
            const int64_t w_rows = n % 3 == 0 ? 3 : 1;
            float * x = alloc_floats(count), * w = alloc_floats(w_rows * dim), * bias = alloc_floats(w_rows * dim);
            float * want = alloc_floats(count), * got = alloc_floats(count), * single = alloc_floats(count);
            for (int64_t i = 0; i < count; i++) x[i] = rng_scaled(4.0f) + (i % dim == 0 ? 3.0f : 0.5f); /* mean ≠ 0 */
            fill(w, w_rows * dim, 1.5f);
            fill(bias, w_rows * dim, 0.5f);
            for (int kind = 0; kind < 4; kind++) {
                const char * name = kind == 0 ? "rms_norm" : kind == 1 ? "rms_norm(1+w)" : kind == 2 ? "layer_norm" : "layer_norm(no bias)";
                const float eps = kind == 0 ? 1e-6f : 1e-5f;
                for (int b = -1; b < n_backends; b++) {
                    odllm_context * ctx = b < 0 ? scalar : backends[b].ctx;
                    float * out = b < 0 ? want : got;
                    int status = kind < 2 ? odllm_rms_norm(ctx, x, n, dim, w, w_rows, kind == 1 ? 1.0f : 0.0f, eps, out)
                                          : odllm_layer_norm(ctx, x, n, dim, w, kind == 2 ? bias : NULL, w_rows, eps, out);
                    CHECK(status == ODLLM_OK, "%s: %s", name, odllm_status_string(status));
                    if (b < 0) {
                        /* The contract against the definition in double. */
                        for (int64_t i = 0; i < n; i++) {
                            const float * xi = x + i * dim;
                            const float * wi = w + (i % w_rows) * dim;
                            double mean = 0, sq = 0;
                            if (kind >= 2) { for (int64_t j = 0; j < dim; j++) mean += xi[j]; mean /= (double)dim; }
                            for (int64_t j = 0; j < dim; j++) sq += (xi[j] - mean) * (xi[j] - mean);
                            const double inv = 1.0 / sqrt(sq / (double)dim + eps);
                            for (int64_t j = 0; j < dim; j++) {
                                double o = (xi[j] - mean) * inv * (kind == 1 ? 1.0 + wi[j] : wi[j]);
                                if (kind == 2) o += bias[(i % w_rows) * dim + j];
                                within(out[i * dim + j], o, 1e-6 * (1.0 + fabs(o)), kind < 2 ? &worst_rms : &worst_layer, name, xi[j]);
                            }
                        }
                        continue;
                    }
                    CHECK(same_values(got, want, count), "%s %s/%d differs from scalar (%lld rows of %lld)", name,
                          odllm_context_backend(ctx), backends[b].threads, (long long)n, (long long)dim);
                    /* In place, as the sandwich norms of Gemma 2 run. */
                    memcpy(single, x, (size_t)count * sizeof(float));
                    if (kind < 2) odllm_rms_norm(ctx, single, n, dim, w, w_rows, kind == 1 ? 1.0f : 0.0f, eps, single);
                    else odllm_layer_norm(ctx, single, n, dim, w, kind == 2 ? bias : NULL, w_rows, eps, single);
                    CHECK(same_values(got, single, count), "%s in place %s/%d", name, odllm_context_backend(ctx), backends[b].threads);
                }
            }
            free(x); free(w); free(bias); free(want); free(got); free(single);
        }
    printf("norms vs double: worst error / bound: rms %.3f, layer %.3f\n", worst_rms, worst_layer);
}

static void test_rope(void) {
    /* head_dim, rotary_dim: full, and partial as Phi-2 (80 of 32·… ), StableLM (25%) and odd halves. */
    static const int64_t shapes[][2] = { { 64, 64 }, { 256, 256 }, { 80, 32 }, { 128, 32 }, { 10, 6 }, { 2, 2 }, { 34, 34 } };
    static const int64_t tokens[] = { 1, 5, 300 };
    double worst = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t ti = 0; ti < sizeof tokens / sizeof tokens[0]; ti++) {
            const int64_t head_dim = shapes[si][0], rotary = shapes[si][1], half = rotary / 2, n = tokens[ti], heads = 3;
            const int64_t count = n * heads * head_dim, pos0 = 17 * (int64_t)ti;
            float * inv_freq = alloc_floats(half), * cosv = alloc_floats(n * half), * sinv = alloc_floats(n * half);
            float * x = alloc_floats(count), * want = alloc_floats(count), * got = alloc_floats(count);
            for (int64_t i = 0; i < half; i++) inv_freq[i] = (float)(1.0 / pow(10000.0, 2.0 * (double)i / (double)rotary));
            int status = odllm_rope_tables(pos0, n, inv_freq, half, cosv, sinv);
            CHECK(status == ODLLM_OK, "rope_tables: %s", odllm_status_string(status));
            for (int64_t t = 0; t < n; t++)
                for (int64_t i = 0; i < half; i++) {
                    const float angle = (float)(pos0 + t) * inv_freq[i];
                    CHECK(cosv[t * half + i] == (float)cos(angle) && sinv[t * half + i] == (float)sin(angle),
                          "rope table t %lld i %lld", (long long)t, (long long)i);
                }
            fill(x, count, 2.0f);
            for (int b = -1; b < n_backends; b++) {
                odllm_context * ctx = b < 0 ? scalar : backends[b].ctx;
                float * out = b < 0 ? want : got;
                memcpy(out, x, (size_t)count * sizeof(float));
                status = odllm_rope(ctx, out, n, heads, head_dim, rotary, cosv, sinv);
                CHECK(status == ODLLM_OK, "rope: %s", odllm_status_string(status));
                if (b < 0) {
                    for (int64_t t = 0; t < n; t++)
                        for (int64_t h = 0; h < heads; h++)
                            for (int64_t d = 0; d < head_dim; d++) {
                                const int64_t base = (t * heads + h) * head_dim, i = d % half;
                                double o = x[base + d];
                                if (d < rotary) {
                                    const double c = cosv[t * half + i], s = sinv[t * half + i];
                                    o = d < half ? x[base + d] * c - x[base + d + half] * s : x[base + d] * c + x[base + d - half] * s;
                                }
                                within(want[base + d], o, 3e-7 * (fabs(x[base + i]) + fabs(x[base + i + half])), &worst, "rope",
                                       x[base + d]);
                            }
                    continue;
                }
                CHECK(same_values(got, want, count), "rope %s/%d differs from scalar (head_dim %lld, rotary %lld, %lld tokens)",
                      odllm_context_backend(ctx), backends[b].threads, (long long)head_dim, (long long)rotary, (long long)n);
            }
            free(inv_freq); free(cosv); free(sinv); free(x); free(want); free(got);
        }
    printf("rope vs double: worst error / bound %.3f\n", worst);
}

static void test_validation(void) {
    odllm_context * ctx = backends[n_backends - 1].ctx;
    float x[64] = { 0 }, w[64] = { 0 }, y[64];
    CHECK(odllm_rms_norm(NULL, x, 1, 8, w, 1, 0, 1e-6f, y) == ODLLM_ERR_NULL_POINTER, "rms null ctx");
    CHECK(odllm_rms_norm(ctx, NULL, 1, 8, w, 1, 0, 1e-6f, y) == ODLLM_ERR_NULL_POINTER, "rms null x");
    CHECK(odllm_rms_norm(ctx, x, 1, 8, NULL, 1, 0, 1e-6f, y) == ODLLM_ERR_NULL_POINTER, "rms null w");
    CHECK(odllm_rms_norm(ctx, x, 1, 8, w, 1, 0, 1e-6f, NULL) == ODLLM_ERR_NULL_POINTER, "rms null y");
    CHECK(odllm_rms_norm(ctx, x, 0, 8, w, 1, 0, 1e-6f, y) == ODLLM_ERR_INVALID_SIZE, "rms n 0");
    CHECK(odllm_rms_norm(ctx, x, 1, -8, w, 1, 0, 1e-6f, y) == ODLLM_ERR_INVALID_SIZE, "rms dim < 0");
    CHECK(odllm_rms_norm(ctx, x, 1, 8, w, 0, 0, 1e-6f, y) == ODLLM_ERR_INVALID_SIZE, "rms w_rows 0");
    CHECK(odllm_rms_norm(ctx, x, 1, 8, w, 1, 0, -1.0f, y) == ODLLM_ERR_INVALID_ARGUMENT, "rms eps < 0");
    CHECK(odllm_rms_norm(ctx, x, 1, 8, w, 1, 0, NAN, y) == ODLLM_ERR_INVALID_ARGUMENT, "rms eps NaN");
    CHECK(odllm_rms_norm(ctx, x, 1, 8, w, 1, INFINITY, 1e-6f, y) == ODLLM_ERR_INVALID_ARGUMENT, "rms offset inf");
    CHECK(odllm_rms_norm(ctx, x, INT64_MAX / 2, 8, w, 1, 0, 1e-6f, y) == ODLLM_ERR_OVERFLOW, "rms overflow");
    CHECK(odllm_layer_norm(ctx, x, 1, 8, NULL, NULL, 1, 1e-5f, y) == ODLLM_ERR_NULL_POINTER, "layer null w");
    CHECK(odllm_layer_norm(ctx, x, 1, 8, w, NULL, 1, INFINITY, y) == ODLLM_ERR_INVALID_ARGUMENT, "layer eps inf");
    CHECK(odllm_layer_norm(ctx, x, 2, 8, w, NULL, 1, 0.0f, y) == ODLLM_OK, "layer eps 0");

    float c[8], s[8];
    CHECK(odllm_rope_tables(0, 1, NULL, 4, c, s) == ODLLM_ERR_NULL_POINTER, "tables null");
    CHECK(odllm_rope_tables(-1, 1, w, 4, c, s) == ODLLM_ERR_INVALID_SIZE, "tables pos < 0");
    CHECK(odllm_rope_tables(0, 0, w, 4, c, s) == ODLLM_ERR_INVALID_SIZE, "tables n 0");
    CHECK(odllm_rope_tables(1 << 24, 1, w, 4, c, s) == ODLLM_ERR_INVALID_SIZE, "tables position past 2^24");
    CHECK(odllm_rope_tables(0, 1, w, 0, c, s) == ODLLM_ERR_INVALID_SIZE, "tables half 0");
    CHECK(odllm_rope(ctx, x, 1, 2, 8, 9, c, s) == ODLLM_ERR_INVALID_SIZE, "rope rotary > head_dim");
    CHECK(odllm_rope(ctx, x, 1, 2, 8, 3, c, s) == ODLLM_ERR_INVALID_SIZE, "rope odd rotary");
    CHECK(odllm_rope(ctx, x, 1, 2, 8, 0, c, s) == ODLLM_ERR_INVALID_SIZE, "rope rotary 0");
    CHECK(odllm_rope(ctx, x, 1, 0, 8, 8, c, s) == ODLLM_ERR_INVALID_SIZE, "rope heads 0");
    CHECK(odllm_rope(ctx, x, 1, 2, 8, 8, NULL, s) == ODLLM_ERR_NULL_POINTER, "rope null cos");
    CHECK(odllm_rope(ctx, x, INT64_MAX / 4, 2, 8, 8, c, s) == ODLLM_ERR_OVERFLOW, "rope overflow");

    CHECK(odllm_activate(ctx, 3, x, 8, y) == ODLLM_ERR_INVALID_ARGUMENT, "activation 3");
    CHECK(odllm_activate(ctx, -1, x, 8, y) == ODLLM_ERR_INVALID_ARGUMENT, "activation -1");
    CHECK(odllm_activate(ctx, ODLLM_ACT_SILU, x, 0, y) == ODLLM_ERR_INVALID_SIZE, "activate count 0");
    CHECK(odllm_activate(ctx, ODLLM_ACT_SILU, x, 8, NULL) == ODLLM_ERR_NULL_POINTER, "activate null y");
    CHECK(odllm_activate(NULL, ODLLM_ACT_SILU, x, 8, y) == ODLLM_ERR_NULL_POINTER, "activate null ctx");
    CHECK(odllm_gated_activate(ctx, ODLLM_ACT_SILU, x, NULL, 8, y) == ODLLM_ERR_NULL_POINTER, "gated null up");
    CHECK(odllm_gated_activate(ctx, ODLLM_ACT_SILU, x, w, INT64_MAX, y) == ODLLM_ERR_OVERFLOW, "gated overflow");
    CHECK(odllm_add(ctx, x, NULL, 8, y) == ODLLM_ERR_NULL_POINTER, "add null b");
    CHECK(odllm_add(ctx, x, w, -1, y) == ODLLM_ERR_INVALID_SIZE, "add count < 0");
    CHECK(odllm_softcap(ctx, x, 8, 0.0f, y) == ODLLM_ERR_INVALID_ARGUMENT, "softcap cap 0");
    CHECK(odllm_softcap(ctx, x, 8, NAN, y) == ODLLM_ERR_INVALID_ARGUMENT, "softcap cap NaN");
    CHECK(odllm_softcap(ctx, x, 8, -30.0f, y) == ODLLM_ERR_INVALID_ARGUMENT, "softcap cap < 0");
    CHECK(odllm_softcap(ctx, NULL, 8, 30.0f, y) == ODLLM_ERR_NULL_POINTER, "softcap null x");
    CHECK(odllm_status_string(ODLLM_ERR_INVALID_ARGUMENT)[0] != 'U', "status string of INVALID_ARGUMENT");
}

int main(void) {
    create_backends();
    if (n_backends > 0 && backends[0].isa == ODLLM_ISA_SCALAR && backends[0].threads == 1) scalar = backends[0].ctx;
    if (!scalar) {
        fprintf(stderr, "no scalar context\n");
        return 1;
    }
    test_activations();
    test_softcap_and_add();
    test_norms();
    test_rope();
    test_validation();
    free_backends();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all op checks passed\n");
    return 0;
}
