/*
 * Matmul throughput of one kernel table: bench_matmul <type 0..5> <n> <k> <m> <threads> [isa] [iterations] [hot].
 * Decode shapes (m = 1) cycle through enough weight copies to defeat the caches, so GB/s is memory traffic,
 * unless hot is 1 (compute speed on cached weights); prefill shapes reuse one copy and report GFLOP/s.
 * Prints the best of the iterations. A benchmark, not a test: CTest does not run it.
 *
 * bench_matmul suite [iterations]: Gemma-2B's FFN shapes (n=16384 k=2048 and n=2048 k=16384), Q4_0 and Q8_0, prefill
 * (m = 1024) and decode (m = 1), 1 and 2 threads, every instruction-set level this CPU has side by side. The levels
 * take turns within each iteration, so load from other processes on a shared machine hits all of them alike.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "odllm.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static size_t weight_bytes(int type, int64_t n, int64_t k) {
    switch (type) {
    case ODLLM_TYPE_F32: return (size_t)(n * k * 4);
    case ODLLM_TYPE_F16: case ODLLM_TYPE_BF16: return (size_t)(n * k * 2);
    case ODLLM_TYPE_INT8: return (size_t)(n * k + n * 4);
    case ODLLM_TYPE_Q8_0: return (size_t)(n * (k / 32) * 34);
    default: return (size_t)(n * (k / 32) * 18);
    }
}

/* Random bytes with small finite scales and float values, so no NaN or subnormal slows anything. */
static void fill(int type, uint8_t * w, int64_t n, int64_t k, uint64_t seed) {
    size_t bytes = weight_bytes(type, n, k);
    for (size_t i = 0; i < bytes; i++) {
        seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
        w[i] = (uint8_t)seed;
    }
    if (type == ODLLM_TYPE_F32)
        for (size_t i = 0; i < bytes / 4; i++) { uint32_t v; memcpy(&v, w + 4 * i, 4); v = (v & 0x807FFFFFu) | 0x3C000000u; memcpy(w + 4 * i, &v, 4); }
    if (type == ODLLM_TYPE_F16 || type == ODLLM_TYPE_BF16)
        for (size_t i = 0; i < bytes / 2; i++) w[2 * i + 1] = (uint8_t)((w[2 * i + 1] & 0x80) | (type == ODLLM_TYPE_F16 ? 0x20 : 0x3C));
    if (type == ODLLM_TYPE_Q8_0 || type == ODLLM_TYPE_Q4_0) {
        size_t block = type == ODLLM_TYPE_Q8_0 ? 34 : 18;
        for (size_t b = 0; b < bytes / block; b++) { w[b * block] = 0x19; w[b * block + 1] = 0x14; } /* f16 0.001 */
    }
    if (type == ODLLM_TYPE_INT8) {
        float s = 0.001f;
        for (int64_t r = 0; r < n; r++) memcpy(w + n * k + r * 4, &s, 4);
    }
}

/* A context per level and one weight set; run() times one call on the weights of iteration it. */
typedef struct bench {
    int type;
    int64_t n, k, m;
    size_t bytes;
    int copies;
    uint8_t ** w;
    float * x;
    float * y;
} bench;

static void bench_init(bench * b, int type, int64_t n, int64_t k, int64_t m, int hot) {
    b->type = type; b->n = n; b->k = k; b->m = m;
    b->bytes = weight_bytes(type, n, k);
    b->copies = 1;
    if (m == 1 && !hot) while ((size_t)b->copies * b->bytes < ((size_t)1 << 30) && b->copies < 64) b->copies++;
    b->w = malloc(sizeof *b->w * (size_t)b->copies);
    for (int c = 0; c < b->copies; c++) {
        b->w[c] = malloc(b->bytes);
        fill(type, b->w[c], n, k, 0x9E3779B97F4A7C15ull + (uint64_t)c);
    }
    b->x = malloc(sizeof(float) * (size_t)(m * k));
    b->y = malloc(sizeof(float) * (size_t)(m * n));
    for (int64_t i = 0; i < m * k; i++) b->x[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
}

static void bench_free(bench * b) {
    for (int c = 0; c < b->copies; c++) free(b->w[c]);
    free(b->w); free(b->x); free(b->y);
}

static double bench_run(const bench * b, odllm_context * ctx, int it) {
    double t0 = now();
    int status = odllm_matmul(ctx, b->x, b->m, b->k, b->w[it % b->copies], b->type, b->n, b->y);
    double dt = now() - t0;
    if (status != ODLLM_OK) {
        fprintf(stderr, "matmul: %s\n", odllm_status_string(status));
        exit(1);
    }
    return dt;
}

static odllm_context * create(int isa, int threads) {
    odllm_context_params params = odllm_context_default_params();
    params.n_threads = threads;
    params.isa = isa;
    odllm_context * ctx = NULL;
    return odllm_context_create(&params, &ctx) == ODLLM_OK ? ctx : NULL;
}

static int suite(int iterations) {
    const int isas[] = { ODLLM_ISA_SCALAR, ODLLM_ISA_AVX2, ODLLM_ISA_AVX2_VNNI, ODLLM_ISA_AVX512_VNNI,
                         ODLLM_ISA_NEON, ODLLM_ISA_NEON_DOTPROD };
    enum { LEVELS = sizeof isas / sizeof isas[0] };
    const int64_t shapes[][2] = { { 16384, 2048 }, { 2048, 16384 } };
    const int types[] = { ODLLM_TYPE_Q4_0, ODLLM_TYPE_Q8_0 };
    const int64_t ms[] = { 1024, 1 };
    printf("best of %d; prefill (m=1024) in GFLOP/s, decode (m=1) in GB/s of weights\n", iterations);
    printf("%-5s %-6s %-6s %5s %3s", "type", "n", "k", "m", "thr");
    for (int l = 1; l < LEVELS; l++) {
        odllm_context * ctx = create(isas[l], 1);
        if (ctx) printf(" %12s", odllm_context_backend(ctx));
        odllm_context_free(ctx);
    }
    printf("\n");
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
            for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
                for (int threads = 1; threads <= 2; threads++) {
                    bench b;
                    bench_init(&b, types[ti], shapes[si][0], shapes[si][1], ms[mi], 0);
                    /* The scalar level is too slow to time at these sizes; it is the reference, not a contender. */
                    odllm_context * ctx[LEVELS] = { 0 };
                    double best[LEVELS];
                    for (int l = 1; l < LEVELS; l++) {
                        ctx[l] = create(isas[l], threads);
                        best[l] = 1e30;
                        if (ctx[l]) bench_run(&b, ctx[l], 0);
                    }
                    for (int it = 0; it < iterations; it++)
                        for (int l = 1; l < LEVELS; l++) {
                            if (!ctx[l]) continue;
                            double dt = bench_run(&b, ctx[l], it);
                            if (dt < best[l]) best[l] = dt;
                        }
                    printf("%-5s %-6lld %-6lld %5lld %3d", types[ti] == ODLLM_TYPE_Q4_0 ? "q4_0" : "q8_0",
                           (long long)b.n, (long long)b.k, (long long)b.m, threads);
                    for (int l = 1; l < LEVELS; l++) {
                        if (!ctx[l]) continue;
                        const double rate = b.m == 1 ? (double)b.bytes / best[l] / 1e9
                                                     : 2.0 * (double)(b.m * b.n * b.k) / best[l] / 1e9;
                        printf(" %12.1f", rate);
                        odllm_context_free(ctx[l]);
                    }
                    printf("\n");
                    fflush(stdout);
                    bench_free(&b);
                }
    return 0;
}

int main(int argc, char ** argv) {
    if (argc >= 2 && strcmp(argv[1], "suite") == 0) return suite(argc > 2 ? atoi(argv[2]) : 5);
    if (argc < 6) {
        fprintf(stderr, "usage: bench_matmul <type 0..5> <n> <k> <m> <threads> [isa] [iterations] [hot]\n"
                        "       bench_matmul suite [iterations]\n");
        return 2;
    }
    const int type = atoi(argv[1]);
    const int64_t n = atoll(argv[2]), k = atoll(argv[3]), m = atoll(argv[4]);
    const int threads = atoi(argv[5]), isa = argc > 6 ? atoi(argv[6]) : ODLLM_ISA_BEST, iterations = argc > 7 ? atoi(argv[7]) : 20;
    const int hot = argc > 8 && atoi(argv[8]) == 1;
    bench b;
    bench_init(&b, type, n, k, m, hot);
    odllm_context_params params = odllm_context_default_params();
    params.n_threads = threads;
    params.isa = isa;
    odllm_context * ctx = NULL;
    int status = odllm_context_create(&params, &ctx);
    if (status != ODLLM_OK) {
        fprintf(stderr, "context: %s\n", odllm_status_string(status));
        return 1;
    }
    bench_run(&b, ctx, 0);
    double best = 1e30;
    for (int it = 0; it < iterations; it++) {
        double dt = bench_run(&b, ctx, it);
        if (dt < best) best = dt;
    }
    printf("%s type %d n=%lld k=%lld m=%lld threads %d: best %.3f ms, %.2f GB/s of weights, %.1f GFLOP/s\n",
           odllm_context_backend(ctx), type, (long long)n, (long long)k, (long long)m, threads, best * 1e3,
           (double)b.bytes / best / 1e9, 2.0 * (double)(m * n * k) / best / 1e9);
    odllm_context_free(ctx);
    bench_free(&b);
    return 0;
}
