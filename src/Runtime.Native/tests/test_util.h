/*
 * What the kernel tests share: the CHECK macro and its failure count, a seeded xorshift generator, the IEEE binary16
 * definition as an oracle, and one context per instruction-set level this CPU offers at 1..4 threads.
 * Define TEST_RNG_SEED before including it, so each test draws its own data.
 */
#ifndef ODLLM_TEST_UTIL_H
#define ODLLM_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "odllm.h"

static int failures = 0;

/* Counts every failure; prints the first 40, which is enough to see a pattern. */
#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (!(cond)) {                                                            \
            if (++failures <= 40) {                                               \
                fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
                fprintf(stderr, __VA_ARGS__);                                     \
                fputc('\n', stderr);                                              \
            }                                                                     \
        }                                                                         \
    } while (0)

static uint64_t rng_state = TEST_RNG_SEED;

static uint32_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Uniform in [-1, 1). */
static float rng_float(void) { return (float)((rng_next() & 0xFFFFFF) / 8388608.0 - 1.0); }

/* Independent of the library's bit tricks: the IEEE definition, evaluated with ldexp. */
static double half_value(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
    double v;
    if (exp == 0) v = ldexp(mant, -24);
    else if (exp == 31) v = mant ? NAN : INFINITY;
    else v = ldexp(1024 + mant, exp - 25);
    return sign ? -v : v;
}

typedef struct backend {
    int isa;
    int threads;
    odllm_context * ctx;
} backend;

enum { MAX_BACKENDS = 32 };
static backend backends[MAX_BACKENDS];
static int n_backends = 0;

/* Every level this build knows, scalar first: backends[0] is the scalar level on one thread, the reference. */
static void create_backends(void) {
    const int isas[] = { ODLLM_ISA_SCALAR, ODLLM_ISA_AVX2, ODLLM_ISA_AVX2_VNNI, ODLLM_ISA_AVX512_VNNI, ODLLM_ISA_NEON,
                         ODLLM_ISA_NEON_DOTPROD, ODLLM_ISA_NEON_I8MM };
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        for (int threads = 1; threads <= 4; threads++) {
            odllm_context_params params = odllm_context_default_params();
            params.isa = isas[i];
            params.n_threads = threads;
            odllm_context * ctx = NULL;
            int status = odllm_context_create(&params, &ctx);
            if (status == ODLLM_ERR_UNSUPPORTED_ISA) {
                if (threads == 1) printf("isa %d not available here: skipped\n", isas[i]);
                break;
            }
            CHECK(status == ODLLM_OK, "create isa %d threads %d: %s", isas[i], threads, odllm_status_string(status));
            if (status != ODLLM_OK) continue;
            CHECK(odllm_context_n_threads(ctx) == threads, "n_threads %d", odllm_context_n_threads(ctx));
            backends[n_backends++] = (backend){ isas[i], threads, ctx };
        }
    }
    printf("testing backends:");
    for (int i = 0; i < n_backends; i++) printf(" %s/%d", odllm_context_backend(backends[i].ctx), backends[i].threads);
    printf("\n");
}

static void free_backends(void) {
    for (int b = 0; b < n_backends; b++) odllm_context_free(backends[b].ctx);
    n_backends = 0;
}

#endif /* ODLLM_TEST_UTIL_H */
