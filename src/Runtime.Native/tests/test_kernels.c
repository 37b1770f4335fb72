/*
 * Kernel tests through the public API: every instruction-set level this CPU offers against the
 * scalar reference and against an independent double-precision oracle, over odd shapes and
 * thread counts; exhaustive f16/bf16 decoding; argument validation.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#include "test_util.h"

#if defined(__aarch64__) && defined(__linux__)
#  include <sys/auxv.h>
#  include <asm/hwcap.h>
#endif


static double bf16_value(uint16_t b) {
    int sign = b >> 15, exp = (b >> 7) & 255, mant = b & 127;
    double v;
    if (exp == 0) v = ldexp(mant, -133);
    else if (exp == 255) v = mant ? NAN : INFINITY;
    else v = ldexp(128 + mant, exp - 134);
    return sign ? -v : v;
}

/* Random finite weights of magnitude about 2^-10 .. 4, sign random. */
static uint16_t random_half(void) {
    uint32_t r = rng_next();
    return (uint16_t)(((r & 1) << 15) | ((5 + (r >> 1) % 13) << 10) | ((r >> 8) & 1023));
}

static uint16_t random_bf16(void) {
    uint32_t r = rng_next();
    return (uint16_t)(((r & 1) << 15) | ((117 + (r >> 1) % 13) << 7) | ((r >> 8) & 127));
}

static double weight_value(int type, const void * w, int64_t index) {
    switch (type) {
    case ODLLM_TYPE_F32: return ((const float *)w)[index];
    case ODLLM_TYPE_F16: return half_value(((const uint16_t *)w)[index]);
    default: return bf16_value(((const uint16_t *)w)[index]);
    }
}

static const char * type_name(int type) {
    return type == ODLLM_TYPE_F32 ? "f32" : type == ODLLM_TYPE_F16 ? "f16" : "bf16";
}

/* Runs one shape through every backend and checks each against the oracle and the scalar result. */
static void check_shape(int type, int64_t m, int64_t k, int64_t n) {
    size_t wsize = type == ODLLM_TYPE_F32 ? 4 : 2;
    float * x = malloc(sizeof(float) * (size_t)(m * k));
    void * w = malloc(wsize * (size_t)(n * k));
    double * oracle = malloc(sizeof(double) * (size_t)(m * n));
    double * bound = malloc(sizeof(double) * (size_t)(m * n));
    float * ref = malloc(sizeof(float) * (size_t)(m * n));
    float * y = malloc(sizeof(float) * (size_t)(m * n + 1));
    for (int64_t i = 0; i < m * k; i++) x[i] = rng_float();
    for (int64_t i = 0; i < n * k; i++) {
        if (type == ODLLM_TYPE_F32) ((float *)w)[i] = rng_float();
        else if (type == ODLLM_TYPE_F16) ((uint16_t *)w)[i] = random_half();
        else ((uint16_t *)w)[i] = random_bf16();
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double sum = 0, abs_sum = 0;
            for (int64_t t = 0; t < k; t++) {
                double p = x[i * k + t] * weight_value(type, w, j * k + t);
                sum += p;
                abs_sum += fabs(p);
            }
            oracle[i * n + j] = sum;
            /* Float summation in any order errs by at most about k·2^-24 of the absolute sum. */
            bound[i * n + j] = (double)(k + 2) * 1.2e-7 * abs_sum + 1e-30;
        }

    for (int b = 0; b < n_backends; b++) {
        const char * name = odllm_context_backend(backends[b].ctx);
        y[m * n] = 12345.0f; /* sentinel: nothing may be written past y[m·n) */
        int status = odllm_matmul(backends[b].ctx, x, m, k, w, type, n, y);
        CHECK(status == ODLLM_OK, "%s status %s", name, odllm_status_string(status));
        CHECK(y[m * n] == 12345.0f, "%s/%d %s m=%lld k=%lld n=%lld wrote past y", name, backends[b].threads,
              type_name(type), (long long)m, (long long)k, (long long)n);
        if (b == 0) memcpy(ref, y, sizeof(float) * (size_t)(m * n));
        int reported = 0;
        for (int64_t i = 0; i < m * n && !reported; i++) {
            double err = fabs(y[i] - oracle[i]), diff = fabs((double)y[i] - ref[i]);
            if (!(err <= bound[i]) || !(diff <= 2 * bound[i])) {
                CHECK(0, "%s/%d %s m=%lld k=%lld n=%lld at [%lld,%lld]: got %.9g, scalar %.9g, oracle %.9g (bound %.3g)",
                      name, backends[b].threads, type_name(type), (long long)m, (long long)k, (long long)n,
                      (long long)(i / n), (long long)(i % n), y[i], ref[i], oracle[i], bound[i]);
                reported = 1;
            }
        }
    }
    free(x); free(w); free(oracle); free(bound); free(ref); free(y);
}

static void test_shapes(void) {
    const int64_t ms[] = { 1, 2, 3, 4, 5, 7, 16 };
    const int64_t ks[] = { 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 257 };
    const int64_t ns[] = { 1, 2, 3, 4, 5, 7, 8, 13, 33 };
    for (int type = ODLLM_TYPE_F32; type <= ODLLM_TYPE_BF16; type++)
        for (size_t a = 0; a < sizeof ms / sizeof ms[0]; a++)
            for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++)
                for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) check_shape(type, ms[a], ks[b], ns[c]);
    /* Large enough to be split across threads, with ragged row counts and multi-panel prefill. */
    const int64_t big[][3] = { { 1, 1000, 301 }, { 3, 1000, 301 }, { 5, 333, 129 }, { 33, 130, 70 }, { 2, 4099, 66 } };
    for (int type = ODLLM_TYPE_F32; type <= ODLLM_TYPE_BF16; type++)
        for (size_t s = 0; s < sizeof big / sizeof big[0]; s++) check_shape(type, big[s][0], big[s][1], big[s][2]);
}

/* Every one of the 65536 encodings decodes exactly, on the fused (m=1) and panel (m=2) paths. */
static void test_exhaustive_decode(int type) {
    const int64_t n = 65536;
    uint16_t * w = malloc(sizeof(uint16_t) * n);
    float * y = malloc(sizeof(float) * 2 * n);
    for (int64_t j = 0; j < n; j++) w[j] = (uint16_t)j;
    const float x[2] = { 1.0f, -2.0f };
    for (int b = 0; b < n_backends; b++) {
        for (int64_t m = 1; m <= 2; m++) {
            int status = odllm_matmul(backends[b].ctx, x, m, 1, w, type, n, y);
            CHECK(status == ODLLM_OK, "%s", odllm_status_string(status));
            int bad = 0;
            for (int64_t i = 0; i < m && !bad; i++)
                for (int64_t j = 0; j < n && !bad; j++) {
                    /* Rounded to float: bf16's largest values times 2 overflow to infinity. */
                    double want = (float)((type == ODLLM_TYPE_F16 ? half_value((uint16_t)j) : bf16_value((uint16_t)j)) * x[i]);
                    double got = y[i * n + j];
                    if (isnan(want) ? !isnan(got) : got != want) {
                        CHECK(0, "%s/%d %s m=%lld: 0x%04llx decoded to %.9g, want %.9g", odllm_context_backend(backends[b].ctx),
                              backends[b].threads, type_name(type), (long long)m, (long long)j, got, want);
                        bad = 1;
                    }
                }
        }
    }
    free(w);
    free(y);
}

static void test_validation(void) {
    odllm_context_params params = odllm_context_default_params();
    odllm_context * ctx = (odllm_context *)&params; /* must be overwritten with NULL on failure */

    CHECK(odllm_abi_version() == ODLLM_ABI_VERSION, "abi %d", odllm_abi_version());
    CHECK(odllm_context_create(NULL, &ctx) == ODLLM_ERR_NULL_POINTER && ctx == NULL, "null params");
    CHECK(odllm_context_create(&params, NULL) == ODLLM_ERR_NULL_POINTER, "null out");
    params.n_threads = -1;
    CHECK(odllm_context_create(&params, &ctx) == ODLLM_ERR_INVALID_SIZE && ctx == NULL, "negative threads");
    params = odllm_context_default_params();
    params.isa = 99;
    CHECK(odllm_context_create(&params, &ctx) == ODLLM_ERR_UNSUPPORTED_ISA && ctx == NULL, "unknown isa");
#if defined(__x86_64__)
    params.isa = ODLLM_ISA_NEON;
#else
    params.isa = ODLLM_ISA_AVX2;
#endif
    CHECK(odllm_context_create(&params, &ctx) == ODLLM_ERR_UNSUPPORTED_ISA && ctx == NULL, "foreign isa");
    params = odllm_context_default_params();
    params.n_threads = 100000;
    CHECK(odllm_context_create(&params, &ctx) == ODLLM_OK, "huge thread count is clamped");
    CHECK(odllm_context_n_threads(ctx) == 256, "clamped to %d", odllm_context_n_threads(ctx));
    odllm_context_free(ctx);

    params = odllm_context_default_params();
    CHECK(odllm_context_create(&params, &ctx) == ODLLM_OK, "defaults");
    CHECK(odllm_context_n_threads(ctx) >= 1, "default threads %d", odllm_context_n_threads(ctx));
    printf("default context: backend %s, %d threads\n", odllm_context_backend(ctx), odllm_context_n_threads(ctx));
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const char * backend = odllm_context_backend(ctx);
    /* libgcc's checks include XCR0: these report AVX-512 only where the OS saves ZMM state, as the dispatcher requires. */
    const int avx512_vnni = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    if (avx512_vnni) {
        CHECK(strcmp(backend, "avx512-vnni") == 0, "best isa on an AVX-512 VNNI CPU is %s", backend);
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        printf("no AVX-512 VNNI on this CPU: the avx512-vnni table is not tested here\n");
        CHECK(strcmp(backend, "avx2") == 0 || strcmp(backend, "avx2-vnni") == 0, "best isa on an AVX2 CPU is %s", backend);
    }
#elif defined(__aarch64__) && defined(__linux__)
    const int dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#  if defined(HWCAP2_I8MM)
    const int i8mm = dotprod && (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0;
#  else
    const int i8mm = 0;
#  endif
    const char * best = i8mm ? "neon-i8mm" : dotprod ? "neon-dotprod" : "neon";
    CHECK(strcmp(odllm_context_backend(ctx), best) == 0, "best isa on this AArch64 CPU is %s, want %s", odllm_context_backend(ctx), best);
#endif

    float x[8] = { 0 }, w[8] = { 0 }, y[4] = { 7, 7, 7, 7 };
    CHECK(odllm_matmul(NULL, x, 1, 2, w, 0, 2, y) == ODLLM_ERR_NULL_POINTER, "null ctx");
    CHECK(odllm_matmul(ctx, NULL, 1, 2, w, 0, 2, y) == ODLLM_ERR_NULL_POINTER, "null x");
    CHECK(odllm_matmul(ctx, x, 1, 2, NULL, 0, 2, y) == ODLLM_ERR_NULL_POINTER, "null w");
    CHECK(odllm_matmul(ctx, x, 1, 2, w, 0, 2, NULL) == ODLLM_ERR_NULL_POINTER, "null y");
    CHECK(odllm_matmul(ctx, x, 0, 2, w, 0, 2, y) == ODLLM_ERR_INVALID_SIZE, "m = 0");
    CHECK(odllm_matmul(ctx, x, -1, 2, w, 0, 2, y) == ODLLM_ERR_INVALID_SIZE, "m < 0");
    CHECK(odllm_matmul(ctx, x, 1, 0, w, 0, 2, y) == ODLLM_ERR_INVALID_SIZE, "k = 0");
    CHECK(odllm_matmul(ctx, x, 1, 2, w, 0, -5, y) == ODLLM_ERR_INVALID_SIZE, "n < 0");
    CHECK(odllm_matmul(ctx, x, 1, 2, w, -1, 2, y) == ODLLM_ERR_UNKNOWN_TYPE, "type -1");
    CHECK(odllm_matmul(ctx, x, 1, 2, w, 6, 2, y) == ODLLM_ERR_UNKNOWN_TYPE, "type 6");
    CHECK(odllm_matmul(ctx, x, 1, 2, w, ODLLM_TYPE_INT8, 2, y) == ODLLM_ERR_INVALID_SIZE, "int8 with k not a multiple of 32");
    CHECK(odllm_matmul(ctx, x, 1, 8, w, ODLLM_TYPE_Q8_0, 2, y) == ODLLM_ERR_INVALID_SIZE, "q8_0 with k not a multiple of 32");
    CHECK(odllm_matmul(ctx, x, 1, 33, w, ODLLM_TYPE_Q4_0, 2, y) == ODLLM_ERR_INVALID_SIZE, "q4_0 with k not a multiple of 32");
    CHECK(odllm_matmul(ctx, x, INT64_MAX / 2, 4, w, 0, 2, y) == ODLLM_ERR_OVERFLOW, "m·k overflows");
    CHECK(odllm_matmul(ctx, x, 1, 4, w, 0, INT64_MAX / 3, y) == ODLLM_ERR_OVERFLOW, "n·k overflows");
    CHECK(odllm_matmul(ctx, x, INT64_MAX / 8, 1, w, 0, INT64_MAX / 8, y) == ODLLM_ERR_OVERFLOW, "m·n overflows");
    CHECK(y[0] == 7 && y[1] == 7 && y[2] == 7 && y[3] == 7, "a failed call wrote to y");
    odllm_context_free(ctx);
    odllm_context_free(NULL);

    CHECK(strcmp(odllm_context_backend(NULL), "") == 0, "backend(NULL)");
    CHECK(odllm_context_n_threads(NULL) == 0, "n_threads(NULL)");
    for (int t = ODLLM_TYPE_F32; t <= ODLLM_TYPE_Q4_0; t++) CHECK(odllm_matmul_supports_type(t), "type %d supported", t);
    CHECK(!odllm_matmul_supports_type(-1) && !odllm_matmul_supports_type(6) && !odllm_matmul_supports_type(42),
          "unknown types not supported");
    for (int s = ODLLM_OK; s <= ODLLM_ERR_THREAD; s++) {
        CHECK(strlen(odllm_status_string(s)) > 5, "status %d has no text", s);
        for (int t = s + 1; t <= ODLLM_ERR_THREAD; t++)
            CHECK(strcmp(odllm_status_string(s), odllm_status_string(t)) != 0, "status %d and %d share text", s, t);
    }
    CHECK(strstr(odllm_status_string(-42), "Unknown") != NULL, "unknown status");
}

/* ---- Integer weight types ---- */

static const char * qtype_name(int type) {
    return type == ODLLM_TYPE_INT8 ? "int8" : type == ODLLM_TYPE_Q8_0 ? "q8_0" : "q4_0";
}

static size_t qtype_bytes(int type, int64_t n, int64_t k) {
    switch (type) {
    case ODLLM_TYPE_INT8: return (size_t)(n * k + n * 4);
    case ODLLM_TYPE_Q8_0: return (size_t)(n * (k / 32) * 34);
    default: return (size_t)(n * (k / 32) * 18);
    }
}

/* Random finite f16 scale of magnitude about 2^-9 .. 2^-4, either sign. */
static uint16_t random_scale_half(void) {
    uint32_t r = rng_next();
    return (uint16_t)(((r & 1) << 15) | ((6 + (r >> 1) % 6) << 10) | ((r >> 8) & 1023));
}

/* Weight row j, block b: its 32 integer values and its scale, decoded independently of the library. */
static double weight_block(int type, const uint8_t * w, int64_t n, int64_t k, int64_t j, int64_t b, int v[32]) {
    if (type == ODLLM_TYPE_INT8) {
        for (int t = 0; t < 32; t++) v[t] = ((const int8_t *)w)[j * k + b * 32 + t];
        float s;
        memcpy(&s, w + n * k + j * 4, 4);
        return s;
    }
    if (type == ODLLM_TYPE_Q8_0) {
        const uint8_t * block = w + (j * (k / 32) + b) * 34;
        for (int t = 0; t < 32; t++) v[t] = (int8_t)block[2 + t];
        return half_value((uint16_t)(block[0] | block[1] << 8));
    }
    const uint8_t * block = w + (j * (k / 32) + b) * 18;
    for (int t = 0; t < 16; t++) {
        v[t] = (block[2 + t] & 15) - 8;
        v[t + 16] = (block[2 + t] >> 4) - 8;
    }
    return half_value((uint16_t)(block[0] | block[1] << 8));
}

/* The activation quantization the header specifies, written out here as the oracle. */
static void spec_quantize(const float * x, int64_t k, int * q, float * d) {
    for (int64_t b = 0; b < k / 32; b++) {
        float amax = 0;
        for (int t = 0; t < 32; t++) amax = fabsf(x[b * 32 + t]) > amax ? fabsf(x[b * 32 + t]) : amax;
        d[b] = amax / 127.0f;
        float id = d[b] != 0 ? 1.0f / d[b] : 0.0f;
        for (int t = 0; t < 32; t++) q[b * 32 + t] = (int)nearbyintf(x[b * 32 + t] * id);
    }
}

static void random_qweights(int type, uint8_t * w, int64_t n, int64_t k) {
    for (size_t i = 0; i < qtype_bytes(type, n, k); i++) w[i] = (uint8_t)rng_next();
    if (type == ODLLM_TYPE_INT8) {
        for (int64_t j = 0; j < n; j++) {
            float s = (float)half_value(random_scale_half());
            memcpy(w + n * k + j * 4, &s, 4);
        }
    } else {
        const int64_t bytes = type == ODLLM_TYPE_Q8_0 ? 34 : 18;
        for (int64_t b = 0; b < n * (k / 32); b++) {
            uint16_t h = random_scale_half();
            w[b * bytes] = (uint8_t)h;
            w[b * bytes + 1] = (uint8_t)(h >> 8);
        }
    }
}

static void check_qshape(int type, int64_t m, int64_t k, int64_t n) {
    const int64_t nb = k / 32;
    float * x = malloc(sizeof(float) * (size_t)(m * k));
    uint8_t * w = malloc(qtype_bytes(type, n, k));
    int * xq = malloc(sizeof(int) * (size_t)(m * k));
    float * xd = malloc(sizeof(float) * (size_t)(m * nb));
    double * oracle = malloc(sizeof(double) * (size_t)(m * n));
    double * bound = malloc(sizeof(double) * (size_t)(m * n));
    float * ref = malloc(sizeof(float) * (size_t)(m * n));
    float * blockdot = malloc(sizeof(float) * (size_t)(m * n));
    float * y = malloc(sizeof(float) * (size_t)(m * n + 1));
    /* Rows of different magnitudes, and some exact zeros (a block of them has scale 0). */
    for (int64_t i = 0; i < m; i++) {
        float mag = (float)ldexp(1.0, (int)(rng_next() % 9) - 4);
        for (int64_t t = 0; t < k; t++) x[i * k + t] = (rng_next() % 7 == 0) ? 0.0f : rng_float() * mag;
        if (k >= 64 && i % 3 == 1) memset(x + i * k + 32, 0, 32 * sizeof(float));
    }
    random_qweights(type, w, n, k);
    for (int64_t i = 0; i < m; i++) spec_quantize(x + i * k, k, xq + i * k, xd + i * nb);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double sum = 0, abs_sum = 0;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                int v[32];
                double dw = weight_block(type, w, n, k, j, b, v);
                long dot = 0, abs_dot = 0;
                for (int t = 0; t < 32; t++) {
                    dot += (long)v[t] * xq[i * k + b * 32 + t];
                    abs_dot += labs((long)v[t] * xq[i * k + b * 32 + t]);
                }
                /* kernels.h's block-dot contract (neon-i8mm's prefill), float for float; int8's dw is its row scale, applied last. */
                acc = fmaf((float)dot, type == ODLLM_TYPE_INT8 ? xd[i * nb + b] : (float)dw * xd[i * nb + b], acc);
                if (b == nb - 1) blockdot[i * n + j] = type == ODLLM_TYPE_INT8 ? acc * (float)dw : acc;
                sum += dw * xd[i * nb + b] * (double)dot;
                /* SIMD kernels scale partial integer sums (lanes) before adding them: bound by |terms|. */
                abs_sum += fabs(dw * xd[i * nb + b]) * (double)abs_dot;
            }
            oracle[i * n + j] = sum;
            bound[i * n + j] = (double)(nb + 4) * 1.2e-7 * abs_sum + 1e-30;
        }

    for (int b = 0; b < n_backends; b++) {
        const char * name = odllm_context_backend(backends[b].ctx);
        y[m * n] = 12345.0f;
        int status = odllm_matmul(backends[b].ctx, x, m, k, w, type, n, y);
        CHECK(status == ODLLM_OK, "%s status %s", name, odllm_status_string(status));
        CHECK(y[m * n] == 12345.0f, "%s/%d %s m=%lld k=%lld n=%lld wrote past y", name, backends[b].threads,
              qtype_name(type), (long long)m, (long long)k, (long long)n);
        if (b == 0) memcpy(ref, y, sizeof(float) * (size_t)(m * n));
        /* The integer contracts fix every float operation: all tables must agree to the bit with the lane contract's
           scalar result, or, for neon-i8mm with m >= 2, with the block-dot contract's result computed above. */
        const float * want = m >= 2 && strcmp(name, "neon-i8mm") == 0 ? blockdot : ref;
        int reported = 0;
        for (int64_t i = 0; i < m * n && !reported; i++) {
            double err = fabs(y[i] - oracle[i]);
            if (!(err <= bound[i]) || memcmp(&y[i], &want[i], sizeof(float)) != 0) {
                CHECK(0, "%s/%d %s m=%lld k=%lld n=%lld at [%lld,%lld]: got %.9g, want %.9g, oracle %.9g (bound %.3g)",
                      name, backends[b].threads, qtype_name(type), (long long)m, (long long)k, (long long)n,
                      (long long)(i / n), (long long)(i % n), y[i], want[i], oracle[i], bound[i]);
                reported = 1;
            }
        }
    }
    free(x); free(w); free(xq); free(xd); free(oracle); free(bound); free(ref); free(blockdot); free(y);
}

static void test_integer_shapes(void) {
    const int64_t ms[] = { 1, 2, 3, 4, 5, 7, 16 };
    const int64_t ks[] = { 32, 64, 96, 256 };
    const int64_t ns[] = { 1, 2, 3, 4, 5, 7, 8, 13, 33 };
    for (int type = ODLLM_TYPE_INT8; type <= ODLLM_TYPE_Q4_0; type++) {
        for (size_t a = 0; a < sizeof ms / sizeof ms[0]; a++)
            for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++)
                for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) check_qshape(type, ms[a], ks[b], ns[c]);
        /*
         * Split across threads, ragged row counts, long rows; { 33, 32768, 9 } and { 131, 16384, 6 } span several
         * activation chunks of prefill, { 150, 4192, 19 } several packed weight chunks (a ragged last one) and row groups.
         */
        const int64_t big[][3] = { { 1, 1024, 301 }, { 3, 992, 301 }, { 5, 320, 129 }, { 33, 128, 70 }, { 2, 4096, 66 },
                                   { 33, 32768, 9 }, { 131, 16384, 6 }, { 150, 4192, 19 } };
        for (size_t s = 0; s < sizeof big / sizeof big[0]; s++) check_qshape(type, big[s][0], big[s][1], big[s][2]);
    }
}

/*
 * Exact cases: block max 127 gives activation scale 1, so x·(1/d) = x and every ±k.5 tests round-half-even at
 * each position; one-hot weights of scale 1 read back single quantized activations, so every backend must
 * return exactly these integers.
 */
static void test_integer_rounding(void) {
    enum { K = 64, N = K };
    float x[K];
    int want[K];
    for (int t = 0; t < K; t++) {
        float v = (float)(t % 16) - 7.5f; /* -7.5, -6.5, ..., 7.5 */
        x[t] = v;
        want[t] = (int)nearbyint(v);
    }
    x[5] = 127.0f; want[5] = 127;
    x[40] = -127.0f; want[40] = -127;
    for (int type = ODLLM_TYPE_INT8; type <= ODLLM_TYPE_Q8_0; type++) {
        uint8_t * w = calloc(1, qtype_bytes(type, N, K));
        for (int j = 0; j < N; j++) {
            if (type == ODLLM_TYPE_INT8) {
                w[j * K + j] = 1;
                float one = 1.0f;
                memcpy(w + N * K + j * 4, &one, 4);
            } else {
                uint8_t * row = w + j * (K / 32) * 34;
                for (int b = 0; b < K / 32; b++) { row[b * 34] = 0x00; row[b * 34 + 1] = 0x3C; } /* f16 1.0 */
                row[(j / 32) * 34 + 2 + j % 32] = 1;
            }
        }
        float y[N];
        for (int b = 0; b < n_backends; b++) {
            CHECK(odllm_matmul(backends[b].ctx, x, 1, K, w, type, N, y) == ODLLM_OK, "rounding matmul");
            for (int j = 0; j < N; j++)
                if (y[j] != (float)want[j]) {
                    CHECK(0, "%s/%d %s: x=%g quantized to %g, want %d", odllm_context_backend(backends[b].ctx),
                          backends[b].threads, qtype_name(type), x[j], y[j], want[j]);
                    break;
                }
        }
        free(w);
    }
}

/* Q4_0 nibble order: byte t holds value t low and value t+16 high, offset by 8; every nibble value once. */
static void test_q4_layout(void) {
    enum { K = 32, N = 32 };
    uint8_t w[N * 18];
    float x[K];
    for (int t = 0; t < K; t++) x[t] = t == 0 ? 127.0f : 0.0f;
    for (int j = 0; j < N; j++) {
        uint8_t * block = w + j * 18;
        block[0] = 0x00; block[1] = 0x3C; /* d = 1 */
        for (int t = 0; t < 16; t++) block[2 + t] = 0x88; /* zeros */
        /* Row j reads x[0] through weight value j % 16 - 8, placed at position 0 (low nibble of byte 0). */
        block[2] = (uint8_t)(0x80 | (j % 16));
        if (j >= 16) {
            /* Rows 16..31 put it at position 16 instead (high nibble of byte 0) and x[16] = 127 below. */
            block[2] = (uint8_t)(((j % 16) << 4) | 0x08);
        }
    }
    float y[N], y2[N];
    for (int b = 0; b < n_backends; b++) {
        CHECK(odllm_matmul(backends[b].ctx, x, 1, K, w, ODLLM_TYPE_Q4_0, N, y) == ODLLM_OK, "q4 layout");
        float x2[K] = { 0 };
        x2[16] = 127.0f;
        CHECK(odllm_matmul(backends[b].ctx, x2, 1, K, w, ODLLM_TYPE_Q4_0, N, y2) == ODLLM_OK, "q4 layout");
        for (int j = 0; j < N; j++) {
            float want_low = j < 16 ? 127.0f * (float)(j % 16 - 8) : 0.0f;
            float want_high = j >= 16 ? 127.0f * (float)(j % 16 - 8) : 0.0f;
            if (y[j] != want_low || y2[j] != want_high) {
                CHECK(0, "%s/%d q4_0 row %d: got %g / %g, want %g / %g", odllm_context_backend(backends[b].ctx),
                      backends[b].threads, j, y[j], y2[j], want_low, want_high);
                break;
            }
        }
    }
}

/* Calls from several threads on one context are serialized, never interleaved. */
typedef struct concurrent_arg {
    odllm_context * ctx;
    const float * x;
    const float * w;
    const float * expected;
    int ok;
} concurrent_arg;

enum { CM = 3, CK = 200, CN = 150 };

static void * concurrent_main(void * p) {
    concurrent_arg * a = p;
    float * y = malloc(sizeof(float) * CM * CN);
    a->ok = 1;
    for (int it = 0; it < 50 && a->ok; it++) {
        if (odllm_matmul(a->ctx, a->x, CM, CK, a->w, ODLLM_TYPE_F32, CN, y) != ODLLM_OK) a->ok = 0;
        if (memcmp(y, a->expected, sizeof(float) * CM * CN) != 0) a->ok = 0;
    }
    free(y);
    return NULL;
}

static void test_concurrent_callers(void) {
    odllm_context_params params = odllm_context_default_params();
    params.n_threads = 3;
    odllm_context * ctx = NULL;
    CHECK(odllm_context_create(&params, &ctx) == ODLLM_OK, "create");
    if (!ctx) return;
    float * x = malloc(sizeof(float) * CM * CK);
    float * w = malloc(sizeof(float) * CN * CK);
    float * expected = malloc(sizeof(float) * CM * CN);
    for (int i = 0; i < CM * CK; i++) x[i] = rng_float();
    for (int i = 0; i < CN * CK; i++) w[i] = rng_float();
    CHECK(odllm_matmul(ctx, x, CM, CK, w, ODLLM_TYPE_F32, CN, expected) == ODLLM_OK, "matmul");
    pthread_t threads[4];
    concurrent_arg args[4];
    for (int t = 0; t < 4; t++) {
        args[t] = (concurrent_arg){ ctx, x, w, expected, 0 };
        pthread_create(&threads[t], NULL, concurrent_main, &args[t]);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(threads[t], NULL);
        CHECK(args[t].ok, "caller %d saw a wrong result", t);
    }
    odllm_context_free(ctx);
    free(x); free(w); free(expected);
}

/* Under qemu each emulated core must select its own dispatch level; CMake names the one expected. */
static void test_dispatch_level(void) {
    const char * expected = getenv("ODLLM_EXPECT_BACKEND");
    if (expected == NULL) return;
    odllm_context_params params = odllm_context_default_params();
    odllm_context * ctx = NULL;
    CHECK(odllm_context_create(&params, &ctx) == ODLLM_OK, "create the default context");
    if (ctx == NULL) return;
    CHECK(strcmp(odllm_context_backend(ctx), expected) == 0, "dispatch chose %s, expected %s", odllm_context_backend(ctx), expected);
    printf("dispatch level: %s\n", odllm_context_backend(ctx));
    odllm_context_free(ctx);
}

int main(void) {
    test_validation();
    test_dispatch_level();
    create_backends();
    test_shapes();
    test_exhaustive_decode(ODLLM_TYPE_F16);
    test_exhaustive_decode(ODLLM_TYPE_BF16);
    test_integer_shapes();
    test_integer_rounding();
    test_q4_layout();
    test_concurrent_callers();
    free_backends();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all kernel tests passed\n");
    return 0;
}
