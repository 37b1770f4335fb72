/*
 * Matmul throughput of one kernel table: bench_matmul <type 0..5> <n> <k> <m> <threads> [isa] [iterations] [hot].
 * Decode shapes (m = 1) cycle through enough weight copies to defeat the caches, so GB/s is memory traffic,
 * unless hot is 1 (compute speed on cached weights); prefill shapes reuse one copy and report GFLOP/s.
 * Prints the best of the iterations. A benchmark, not a test: CTest does not run it.
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

int main(int argc, char ** argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: bench_matmul <type 0..5> <n> <k> <m> <threads> [isa] [iterations] [hot]\n");
        return 2;
    }
    const int type = atoi(argv[1]);
    const int64_t n = atoll(argv[2]), k = atoll(argv[3]), m = atoll(argv[4]);
    const int threads = atoi(argv[5]), isa = argc > 6 ? atoi(argv[6]) : ODLLM_ISA_BEST, iterations = argc > 7 ? atoi(argv[7]) : 20;
    const int hot = argc > 8 && atoi(argv[8]) == 1;
    const size_t bytes = weight_bytes(type, n, k);
    int copies = 1;
    if (m == 1 && !hot) while ((size_t)copies * bytes < ((size_t)1 << 30) && copies < 64) copies++;
    uint8_t ** w = malloc(sizeof *w * (size_t)copies);
    for (int c = 0; c < copies; c++) {
        w[c] = malloc(bytes);
        fill(type, w[c], n, k, 0x9E3779B97F4A7C15ull + (uint64_t)c);
    }
    float * x = malloc(sizeof(float) * (size_t)(m * k));
    float * y = malloc(sizeof(float) * (size_t)(m * n));
    for (int64_t i = 0; i < m * k; i++) x[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;

    odllm_context_params params = odllm_context_default_params();
    params.n_threads = threads;
    params.isa = isa;
    odllm_context * ctx = NULL;
    int status = odllm_context_create(&params, &ctx);
    if (status != ODLLM_OK) {
        fprintf(stderr, "context: %s\n", odllm_status_string(status));
        return 1;
    }
    status = odllm_matmul(ctx, x, m, k, w[0], type, n, y);
    if (status != ODLLM_OK) {
        fprintf(stderr, "matmul: %s\n", odllm_status_string(status));
        return 1;
    }
    double best = 1e30;
    for (int it = 0; it < iterations; it++) {
        double t0 = now();
        odllm_matmul(ctx, x, m, k, w[it % copies], type, n, y);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("%s type %d n=%lld k=%lld m=%lld threads %d: best %.3f ms, %.2f GB/s of weights, %.1f GFLOP/s\n",
           odllm_context_backend(ctx), type, (long long)n, (long long)k, (long long)m, threads, best * 1e3,
           (double)bytes / best / 1e9, 2.0 * (double)(m * n * k) / best / 1e9);
    odllm_context_free(ctx);
    for (int c = 0; c < copies; c++) free(w[c]);
    free(w); free(x); free(y);
    return 0;
}
