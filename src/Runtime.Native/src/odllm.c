/* The public API: argument validation, contexts, and the operators' threading over kernels. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels.h"

enum {
    MAX_THREADS = 256,
    /* Below this many multiply-adds a job finishes before a worker would wake up. */
    PARALLEL_MIN_WORK = 1 << 16,
    /* Prefill decodes this many f32 floats of weight rows per thread at a time (64 KiB). */
    PANEL_FLOATS = 1 << 14,
    /* Integer prefill keeps about this many bytes of quantized activations in L2 at a time. */
    ACT_CHUNK_BYTES = 1 << 20,
};

struct odllm_context {
    const odllm_kernel_table * kernels;
    odllm_pool * pool;
    int n_threads;
    /* One operator at a time: the pool and the scratch panels are shared by every call. */
    pthread_mutex_t call_mutex;
    float * scratch;
    size_t scratch_floats;
    /* Quantized activations for the integer paths: int8 values, then one f32 scale per block. */
    void * act;
    size_t act_bytes;
};

int32_t odllm_abi_version(void) { return ODLLM_ABI_VERSION; }

const char * odllm_status_string(int32_t status) {
    switch (status) {
    case ODLLM_OK: return "Success.";
    case ODLLM_ERR_NULL_POINTER: return "A required pointer argument is null.";
    case ODLLM_ERR_INVALID_SIZE: return "A size or count is zero, negative or out of range.";
    case ODLLM_ERR_OVERFLOW: return "The tensor sizes are too large to address.";
    case ODLLM_ERR_UNKNOWN_TYPE: return "The tensor type value is not a known odllm_type.";
    case ODLLM_ERR_UNSUPPORTED_TYPE: return "This operator does not implement weights of this tensor type yet.";
    case ODLLM_ERR_UNSUPPORTED_ISA: return "The requested instruction set is not available on this CPU or in this build.";
    case ODLLM_ERR_OUT_OF_MEMORY: return "Out of memory.";
    case ODLLM_ERR_THREAD: return "A worker thread could not be started.";
    case ODLLM_ERR_INVALID_ARGUMENT: return "An enum value is out of range, or a float parameter is NaN, infinite or out of range.";
    default: return "Unknown odllm status code.";
    }
}

odllm_context_params odllm_context_default_params(void) {
    odllm_context_params params = { .n_threads = 0, .isa = ODLLM_ISA_BEST };
    return params;
}

static int select_kernels(int32_t isa, const odllm_kernel_table ** out) {
    switch (isa) {
    case ODLLM_ISA_BEST:
#if defined(ODLLM_HAVE_AVX512_VNNI)
        if (odllm_cpu_has_avx512_vnni()) { *out = &odllm_kernels_avx512_vnni; return ODLLM_OK; }
#endif
#if defined(ODLLM_HAVE_AVX_VNNI)
        if (odllm_cpu_has_avx_vnni()) { *out = &odllm_kernels_avx2_vnni; return ODLLM_OK; }
#endif
#if defined(ODLLM_HAVE_AVX2)
        if (odllm_cpu_has_avx2()) { *out = &odllm_kernels_avx2; return ODLLM_OK; }
#endif
#if defined(ODLLM_HAVE_I8MM)
        if (odllm_cpu_has_i8mm()) { *out = &odllm_kernels_neon_i8mm; return ODLLM_OK; }
#endif
#if defined(ODLLM_HAVE_NEON)
        if (odllm_cpu_has_dotprod()) { *out = &odllm_kernels_neon_dotprod; return ODLLM_OK; }
        if (odllm_cpu_has_neon()) { *out = &odllm_kernels_neon; return ODLLM_OK; }
#endif
        *out = &odllm_kernels_ref;
        return ODLLM_OK;
    case ODLLM_ISA_SCALAR:
        *out = &odllm_kernels_ref;
        return ODLLM_OK;
#if defined(ODLLM_HAVE_AVX2)
    case ODLLM_ISA_AVX2:
        if (!odllm_cpu_has_avx2()) return ODLLM_ERR_UNSUPPORTED_ISA;
        *out = &odllm_kernels_avx2;
        return ODLLM_OK;
#endif
#if defined(ODLLM_HAVE_AVX_VNNI)
    case ODLLM_ISA_AVX2_VNNI:
        if (!odllm_cpu_has_avx_vnni()) return ODLLM_ERR_UNSUPPORTED_ISA;
        *out = &odllm_kernels_avx2_vnni;
        return ODLLM_OK;
#endif
#if defined(ODLLM_HAVE_AVX512_VNNI)
    case ODLLM_ISA_AVX512_VNNI:
        if (!odllm_cpu_has_avx512_vnni()) return ODLLM_ERR_UNSUPPORTED_ISA;
        *out = &odllm_kernels_avx512_vnni;
        return ODLLM_OK;
#endif
#if defined(ODLLM_HAVE_NEON)
    case ODLLM_ISA_NEON:
        if (!odllm_cpu_has_neon()) return ODLLM_ERR_UNSUPPORTED_ISA;
        *out = &odllm_kernels_neon;
        return ODLLM_OK;
    case ODLLM_ISA_NEON_DOTPROD:
        if (!odllm_cpu_has_dotprod()) return ODLLM_ERR_UNSUPPORTED_ISA;
        *out = &odllm_kernels_neon_dotprod;
        return ODLLM_OK;
#endif
#if defined(ODLLM_HAVE_I8MM)
    case ODLLM_ISA_NEON_I8MM:
        if (!odllm_cpu_has_i8mm()) return ODLLM_ERR_UNSUPPORTED_ISA;
        *out = &odllm_kernels_neon_i8mm;
        return ODLLM_OK;
#endif
    default:
        return ODLLM_ERR_UNSUPPORTED_ISA;
    }
}

int32_t odllm_context_create(const odllm_context_params * params, odllm_context ** out) {
    if (!out) return ODLLM_ERR_NULL_POINTER;
    *out = NULL;
    if (!params) return ODLLM_ERR_NULL_POINTER;
    if (params->n_threads < 0) return ODLLM_ERR_INVALID_SIZE;

    const odllm_kernel_table * kernels;
    int status = select_kernels(params->isa, &kernels);
    if (status != ODLLM_OK) return status;

    int n_threads = params->n_threads > 0 ? params->n_threads : odllm_cpu_physical_cores();
    if (n_threads < 1) n_threads = 1;
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;

    odllm_context * ctx = calloc(1, sizeof *ctx);
    if (!ctx) return ODLLM_ERR_OUT_OF_MEMORY;
    ctx->kernels = kernels;
    ctx->n_threads = n_threads;
    status = odllm_pool_create(n_threads, &ctx->pool);
    if (status != ODLLM_OK) {
        free(ctx);
        return status;
    }
    pthread_mutex_init(&ctx->call_mutex, NULL);
    *out = ctx;
    return ODLLM_OK;
}

void odllm_context_free(odllm_context * ctx) {
    if (!ctx) return;
    odllm_pool_free(ctx->pool);
    pthread_mutex_destroy(&ctx->call_mutex);
    free(ctx->scratch);
    free(ctx->act);
    free(ctx);
}

const char * odllm_context_backend(const odllm_context * ctx) { return ctx ? ctx->kernels->name : ""; }

int32_t odllm_context_n_threads(const odllm_context * ctx) { return ctx ? ctx->n_threads : 0; }

const odllm_kernel_table * odllm_context_lock(odllm_context * ctx, odllm_pool ** pool, int * n_threads) {
    pthread_mutex_lock(&ctx->call_mutex);
    *pool = ctx->pool;
    *n_threads = ctx->n_threads;
    return ctx->kernels;
}

void odllm_context_unlock(odllm_context * ctx) { pthread_mutex_unlock(&ctx->call_mutex); }

int32_t odllm_matmul_supports_type(int32_t w_type) {
    return w_type >= ODLLM_TYPE_F32 && w_type <= ODLLM_TYPE_Q4_0;
}

static int is_integer_type(int32_t w_type) {
    return w_type == ODLLM_TYPE_INT8 || w_type == ODLLM_TYPE_Q8_0 || w_type == ODLLM_TYPE_Q4_0;
}

typedef struct matmul_job {
    const odllm_kernel_table * kernels;
    const float * x;
    int64_t m, k, n;
    const void * w;
    int32_t w_type;
    float * y;
    int64_t rows_per_thread;
    int64_t panel_rows;
    float * scratch; /* panel_rows * k floats per thread, for prefill over f16/bf16 */
    const int8_t * xq; /* the integer paths' quantized activations: m rows of k */
    const float * xd;  /* and their block scales: m rows of k / ODLLM_QK */
} matmul_job;

typedef struct quantize_job {
    const odllm_kernel_table * kernels;
    const float * x;
    int64_t m, k, rows_per_thread;
    int8_t * xq;
    float * xd;
} quantize_job;

static void quantize_slice(void * arg, int ith, int nth) {
    (void)nth;
    const quantize_job * job = arg;
    const int64_t i0 = (int64_t)ith * job->rows_per_thread;
    const int64_t i1 = (i0 + job->rows_per_thread < job->m) ? i0 + job->rows_per_thread : job->m;
    for (int64_t i = i0; i < i1; i++)
        job->kernels->quantize_act(job->x + i * job->k, job->k, job->xq + i * job->k, job->xd + i * (job->k / ODLLM_QK));
}

static void matmul_slice(void * arg, int ith, int nth) {
    (void)nth;
    const matmul_job * job = arg;
    const odllm_kernel_table * kt = job->kernels;
    const int64_t m = job->m, k = job->k, n = job->n;
    const int64_t j0 = (int64_t)ith * job->rows_per_thread;
    if (j0 >= n) return;
    const int64_t rows = (n - j0 < job->rows_per_thread) ? n - j0 : job->rows_per_thread;

    if (job->w_type == ODLLM_TYPE_F32) {
        kt->gemm_f32(job->x, k, m, (const float *)job->w + j0 * k, k, rows, k, job->y + j0, n);
        return;
    }
    if (is_integer_type(job->w_type)) {
        /*
         * Prefill in chunks of activation rows that stay in L2 (about ACT_CHUNK_BYTES of int8 values) while every
         * weight tile of this thread passes over them; re-reading the weights once per chunk costs far less than
         * streaming the whole prompt from L3 again for every four weight rows.
         */
        int64_t chunk = (ACT_CHUNK_BYTES / k) & ~(int64_t)1;
        if (chunk < 2) chunk = 2;
        const int64_t nb = k / ODLLM_QK;
        const uint8_t * w8 = job->w;
        for (int64_t i0 = 0; i0 < m; ) {
            int64_t mc = m - i0 < chunk ? m - i0 : chunk;
            /* No chunk of one row after others: a kernel may treat m = 1 (decode) differently (neon-i8mm does). */
            if (m - i0 - mc == 1) mc++;
            const int8_t * xq = job->xq + i0 * k;
            const float * xd = job->xd + i0 * nb;
            float * y = job->y + i0 * n + j0;
            switch (job->w_type) {
            case ODLLM_TYPE_Q8_0:
                kt->gemm_q8_0(xq, xd, mc, w8 + j0 * (nb * ODLLM_Q8_0_BYTES), rows, k, y, n);
                break;
            case ODLLM_TYPE_Q4_0:
                kt->gemm_q4_0(xq, xd, mc, w8 + j0 * (nb * ODLLM_Q4_0_BYTES), rows, k, y, n);
                break;
            default:
                /* INT8, planar: n rows of k int8, then n f32 row scales. */
                kt->gemm_i8(xq, xd, mc, (const int8_t *)w8 + j0 * k, w8 + n * k + j0 * 4, rows, k, y, n);
                break;
            }
            i0 += mc;
        }
        return;
    }
    const uint16_t * w16 = (const uint16_t *)job->w + j0 * k;
    if (m == 1) {
        /* Decode reads each weight once: convert in registers, never through memory. */
        if (job->w_type == ODLLM_TYPE_F16) kt->gemv_f16(job->x, w16, k, rows, k, job->y + j0);
        else kt->gemv_bf16(job->x, w16, k, rows, k, job->y + j0);
        return;
    }
    /* Prefill: convert a panel of weight rows once, then reuse it for all m input rows. */
    float * panel = job->scratch + (size_t)ith * (size_t)(job->panel_rows * k);
    for (int64_t p = 0; p < rows; p += job->panel_rows) {
        const int64_t pr = (rows - p < job->panel_rows) ? rows - p : job->panel_rows;
        if (job->w_type == ODLLM_TYPE_F16) kt->f16_to_f32(w16 + p * k, panel, pr * k);
        else kt->bf16_to_f32(w16 + p * k, panel, pr * k);
        kt->gemm_f32(job->x, k, m, panel, k, pr, k, job->y + j0 + p, n);
    }
}

static int ensure_scratch(odllm_context * ctx, size_t floats) {
    if (floats <= ctx->scratch_floats) return ODLLM_OK;
    float * grown = malloc(floats * sizeof(float));
    if (!grown) return ODLLM_ERR_OUT_OF_MEMORY;
    free(ctx->scratch);
    ctx->scratch = grown;
    ctx->scratch_floats = floats;
    return ODLLM_OK;
}

int32_t odllm_matmul(odllm_context * ctx, const float * x, int64_t m, int64_t k,
                     const void * w, int32_t w_type, int64_t n, float * y) {
    if (!ctx || !x || !w || !y) return ODLLM_ERR_NULL_POINTER;
    if (m <= 0 || k <= 0 || n <= 0) return ODLLM_ERR_INVALID_SIZE;
    if (w_type < ODLLM_TYPE_F32 || w_type > ODLLM_TYPE_Q4_0) return ODLLM_ERR_UNKNOWN_TYPE;
    if (!odllm_matmul_supports_type(w_type)) return ODLLM_ERR_UNSUPPORTED_TYPE;
    if (is_integer_type(w_type) && k % ODLLM_QK != 0) return ODLLM_ERR_INVALID_SIZE;
    /* Every buffer's byte size must fit a ptrdiff_t, so all index arithmetic below is safe. */
    const int64_t max_elems = (int64_t)((PTRDIFF_MAX < INT64_MAX ? PTRDIFF_MAX : INT64_MAX) / sizeof(float));
    if (m > max_elems / k || n > max_elems / k || m > max_elems / n) return ODLLM_ERR_OVERFLOW;

    int nth = ctx->n_threads;
    const int64_t groups = (n + 3) / 4; /* whole 4-row tiles per thread keep the SIMD tiles full */
    if (nth > groups) nth = (int)groups;
    if (m * n < PARALLEL_MIN_WORK / k + 1) nth = 1;

    matmul_job job = {
        .kernels = ctx->kernels, .x = x, .m = m, .k = k, .n = n, .w = w, .w_type = w_type, .y = y,
        .rows_per_thread = ((groups + nth - 1) / nth) * 4,
        .panel_rows = 4,
    };

    pthread_mutex_lock(&ctx->call_mutex);
    if (is_integer_type(w_type)) {
        /* m·k fits a ptrdiff_t in floats (checked above), so m·k bytes plus m·k/8 bytes of scales fit too. */
        const size_t values = (size_t)(m * k), bytes = values + values / ODLLM_QK * sizeof(float);
        if (bytes > ctx->act_bytes) {
            void * grown = malloc(bytes);
            if (!grown) {
                pthread_mutex_unlock(&ctx->call_mutex);
                return ODLLM_ERR_OUT_OF_MEMORY;
            }
            free(ctx->act);
            ctx->act = grown;
            ctx->act_bytes = bytes;
        }
        /* Values first, then scales: 32-value rows keep the scale array 4-byte aligned. */
        int8_t * xq = ctx->act;
        float * xd = (float *)(xq + values);
        int qth = ctx->n_threads < m ? ctx->n_threads : (int)m;
        if (m * k < PARALLEL_MIN_WORK) qth = 1;
        quantize_job qjob = { .kernels = ctx->kernels, .x = x, .m = m, .k = k,
                              .rows_per_thread = (m + qth - 1) / qth, .xq = xq, .xd = xd };
        odllm_pool_run(ctx->pool, qth, quantize_slice, &qjob);
        job.xq = xq;
        job.xd = xd;
    } else if (w_type != ODLLM_TYPE_F32 && m > 1) {
        int64_t panel = (PANEL_FLOATS / k) / 4 * 4;
        job.panel_rows = panel < 4 ? 4 : panel > 64 ? 64 : panel;
        if (job.panel_rows > job.rows_per_thread) job.panel_rows = job.rows_per_thread;
        if ((uint64_t)job.panel_rows * (uint64_t)k > SIZE_MAX / sizeof(float) / (size_t)nth) {
            pthread_mutex_unlock(&ctx->call_mutex);
            return ODLLM_ERR_OVERFLOW;
        }
        int status = ensure_scratch(ctx, (size_t)nth * (size_t)(job.panel_rows * k));
        if (status != ODLLM_OK) {
            pthread_mutex_unlock(&ctx->call_mutex);
            return status;
        }
        job.scratch = ctx->scratch;
    }
    odllm_pool_run(ctx->pool, nth, matmul_slice, &job);
    pthread_mutex_unlock(&ctx->call_mutex);
    return ODLLM_OK;
}

/* ---- Context access for operators in other files (attention.c) ---- */

int odllm_context_begin(odllm_context * ctx, size_t scratch_floats, odllm_op * op) {
    pthread_mutex_lock(&ctx->call_mutex);
    int status = ensure_scratch(ctx, scratch_floats);
    if (status != ODLLM_OK) {
        pthread_mutex_unlock(&ctx->call_mutex);
        return status;
    }
    *op = (odllm_op){ .kernels = ctx->kernels, .pool = ctx->pool, .n_threads = ctx->n_threads, .scratch = ctx->scratch };
    return ODLLM_OK;
}

void odllm_context_end(odllm_context * ctx) { pthread_mutex_unlock(&ctx->call_mutex); }
