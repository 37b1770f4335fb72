/* The element-wise and row-wise operators of odllm.h: argument checks, then rows or runs split over the pool. */
#include <math.h>
#include <stdint.h>

#include "kernels.h"

enum {
    /*
     * Below these many values a call finishes before woken workers would start: a decode step's norms
     * and residual adds (a few thousand values) stay on the caller, prefill's rows are shared out.
     */
    PARALLEL_MIN_VALUES = 1 << 16,
    /* Activations cost tens of instructions per value, so they pay for threads sooner. */
    PARALLEL_MIN_TRANSCENDENTAL = 1 << 14,
    /* Element-wise runs are split at multiples of this many values (whole SIMD vectors, whole cache lines). */
    RUN_ALIGN = 64,
};

/* Largest number of floats any one buffer may hold, so that every byte offset fits a ptrdiff_t. */
static int64_t max_floats(void) {
    return (int64_t)((PTRDIFF_MAX < INT64_MAX ? PTRDIFF_MAX : INT64_MAX) / sizeof(float));
}

static int threads_for(int n_threads, int64_t items, int64_t values, int64_t min_values) {
    if (values < min_values) return 1;
    return items < n_threads ? (int)items : n_threads;
}

/* The share [*begin, *end) of items that thread ith of nth takes, in blocks of align items. */
static void share(int64_t items, int64_t align, int ith, int nth, int64_t * begin, int64_t * end) {
    const int64_t blocks = (items + align - 1) / align;
    const int64_t per = (blocks + nth - 1) / nth;
    int64_t b = (int64_t)ith * per * align, e = b + per * align;
    if (b > items) b = items;
    if (e > items) e = items;
    *begin = b;
    *end = e;
}

typedef struct norm_job {
    const odllm_op_kernels * ops;
    const float * x;
    int64_t n, dim;
    const float * w;
    const float * b;
    int64_t w_rows;
    float w_offset, eps;
    int layer;
    float * y;
} norm_job;

static void norm_slice(void * arg, int ith, int nth) {
    const norm_job * job = arg;
    int64_t i0, i1;
    share(job->n, 1, ith, nth, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) {
        const int64_t r = (i % job->w_rows) * job->dim;
        if (job->layer)
            job->ops->layer_norm(job->x + i * job->dim, job->dim, job->w + r, job->b ? job->b + r : NULL, job->eps,
                                 job->y + i * job->dim);
        else
            job->ops->rms_norm(job->x + i * job->dim, job->dim, job->w + r, job->w_offset, job->eps, job->y + i * job->dim);
    }
}

static int32_t check_rows(const float * x, int64_t n, int64_t dim, const float * w, int64_t w_rows, float eps, const float * y) {
    if (!x || !w || !y) return ODLLM_ERR_NULL_POINTER;
    if (n <= 0 || dim <= 0 || w_rows <= 0) return ODLLM_ERR_INVALID_SIZE;
    if (!(eps >= 0.0f) || isinf(eps)) return ODLLM_ERR_INVALID_ARGUMENT;
    if (n > max_floats() / dim || w_rows > max_floats() / dim) return ODLLM_ERR_OVERFLOW;
    return ODLLM_OK;
}

static int32_t run_norm(odllm_context * ctx, norm_job * job) {
    odllm_pool * pool;
    int n_threads;
    job->ops = odllm_context_lock(ctx, &pool, &n_threads)->ops;
    const int nth = threads_for(n_threads, job->n, job->n * job->dim, PARALLEL_MIN_VALUES);
    odllm_pool_run(pool, nth, norm_slice, job);
    odllm_context_unlock(ctx);
    return ODLLM_OK;
}

int32_t odllm_rms_norm(odllm_context * ctx, const float * x, int64_t n, int64_t dim,
                       const float * w, int64_t w_rows, float w_offset, float eps, float * y) {
    if (!ctx) return ODLLM_ERR_NULL_POINTER;
    int32_t status = check_rows(x, n, dim, w, w_rows, eps, y);
    if (status != ODLLM_OK) return status;
    if (!isfinite(w_offset)) return ODLLM_ERR_INVALID_ARGUMENT;
    norm_job job = { .x = x, .n = n, .dim = dim, .w = w, .w_rows = w_rows, .w_offset = w_offset, .eps = eps, .y = y };
    return run_norm(ctx, &job);
}

int32_t odllm_layer_norm(odllm_context * ctx, const float * x, int64_t n, int64_t dim,
                         const float * w, const float * b, int64_t w_rows, float eps, float * y) {
    if (!ctx) return ODLLM_ERR_NULL_POINTER;
    int32_t status = check_rows(x, n, dim, w, w_rows, eps, y);
    if (status != ODLLM_OK) return status;
    norm_job job = { .x = x, .n = n, .dim = dim, .w = w, .b = b, .w_rows = w_rows, .eps = eps, .layer = 1, .y = y };
    return run_norm(ctx, &job);
}

int32_t odllm_rope_tables(int64_t pos0, int64_t n, const float * inv_freq, int64_t half, float * cos_out, float * sin_out) {
    if (!inv_freq || !cos_out || !sin_out) return ODLLM_ERR_NULL_POINTER;
    /* Positions past 2^24 are no longer exact in the f32 the angle is computed from. */
    if (pos0 < 0 || n <= 0 || half <= 0 || pos0 > (1 << 24) - n) return ODLLM_ERR_INVALID_SIZE;
    if (n > max_floats() / half) return ODLLM_ERR_OVERFLOW;
    for (int64_t t = 0; t < n; t++) {
        const float position = (float)(pos0 + t);
        for (int64_t i = 0; i < half; i++) {
            /* transformers multiplies in f32 and takes cos/sin of that angle at higher precision. */
            const float angle = position * inv_freq[i];
            cos_out[t * half + i] = (float)cos((double)angle);
            sin_out[t * half + i] = (float)sin((double)angle);
        }
    }
    return ODLLM_OK;
}

typedef struct rope_job {
    const odllm_op_kernels * ops;
    float * x;
    int64_t n, heads, head_dim, half;
    const float * cos;
    const float * sin;
} rope_job;

static void rope_slice(void * arg, int ith, int nth) {
    const rope_job * job = arg;
    int64_t t0, t1;
    share(job->n, 1, ith, nth, &t0, &t1);
    for (int64_t t = t0; t < t1; t++)
        for (int64_t h = 0; h < job->heads; h++)
            job->ops->rope(job->x + (t * job->heads + h) * job->head_dim, job->cos + t * job->half, job->sin + t * job->half,
                           job->half);
}

int32_t odllm_rope(odllm_context * ctx, float * x, int64_t n, int64_t heads, int64_t head_dim,
                   int64_t rotary_dim, const float * cos, const float * sin) {
    if (!ctx || !x || !cos || !sin) return ODLLM_ERR_NULL_POINTER;
    if (n <= 0 || heads <= 0 || head_dim <= 0 || rotary_dim <= 0 || rotary_dim > head_dim || rotary_dim % 2 != 0)
        return ODLLM_ERR_INVALID_SIZE;
    if (heads > max_floats() / head_dim || n > max_floats() / (heads * head_dim)) return ODLLM_ERR_OVERFLOW;
    rope_job job = { .x = x, .n = n, .heads = heads, .head_dim = head_dim, .half = rotary_dim / 2, .cos = cos, .sin = sin };
    odllm_pool * pool;
    int n_threads;
    job.ops = odllm_context_lock(ctx, &pool, &n_threads)->ops;
    const int nth = threads_for(n_threads, n, n * heads * rotary_dim, PARALLEL_MIN_VALUES);
    odllm_pool_run(pool, nth, rope_slice, &job);
    odllm_context_unlock(ctx);
    return ODLLM_OK;
}

typedef enum elementwise_kind { EW_ACTIVATE, EW_GATED, EW_ADD, EW_SOFTCAP } elementwise_kind;

typedef struct elementwise_job {
    const odllm_op_kernels * ops;
    elementwise_kind kind;
    int32_t act;
    const float * a;
    const float * b;
    float cap;
    int64_t count;
    float * y;
} elementwise_job;

static void elementwise_slice(void * arg, int ith, int nth) {
    const elementwise_job * job = arg;
    int64_t i0, i1;
    share(job->count, RUN_ALIGN, ith, nth, &i0, &i1);
    if (i0 >= i1) return;
    const int64_t c = i1 - i0;
    switch (job->kind) {
    case EW_ACTIVATE: job->ops->activate(job->act, job->a + i0, c, job->y + i0); break;
    case EW_GATED: job->ops->gated_activate(job->act, job->a + i0, job->b + i0, c, job->y + i0); break;
    case EW_ADD: job->ops->add(job->a + i0, job->b + i0, c, job->y + i0); break;
    case EW_SOFTCAP: job->ops->softcap(job->a + i0, c, job->cap, job->y + i0); break;
    }
}

static int32_t run_elementwise(odllm_context * ctx, elementwise_job * job) {
    if (!ctx || !job->a || !job->y) return ODLLM_ERR_NULL_POINTER;
    if ((job->kind == EW_GATED || job->kind == EW_ADD) && !job->b) return ODLLM_ERR_NULL_POINTER;
    if (job->count <= 0) return ODLLM_ERR_INVALID_SIZE;
    if (job->count > max_floats()) return ODLLM_ERR_OVERFLOW;
    odllm_pool * pool;
    int n_threads;
    job->ops = odllm_context_lock(ctx, &pool, &n_threads)->ops;
    const int64_t min_values = job->kind == EW_ADD ? PARALLEL_MIN_VALUES : PARALLEL_MIN_TRANSCENDENTAL;
    const int nth = threads_for(n_threads, (job->count + RUN_ALIGN - 1) / RUN_ALIGN, job->count, min_values);
    odllm_pool_run(pool, nth, elementwise_slice, job);
    odllm_context_unlock(ctx);
    return ODLLM_OK;
}

static int known_activation(int32_t act) {
    return act == ODLLM_ACT_SILU || act == ODLLM_ACT_GELU_TANH || act == ODLLM_ACT_GELU_ERF;
}

int32_t odllm_activate(odllm_context * ctx, int32_t act, const float * x, int64_t count, float * y) {
    if (!known_activation(act)) return ODLLM_ERR_INVALID_ARGUMENT;
    elementwise_job job = { .kind = EW_ACTIVATE, .act = act, .a = x, .count = count, .y = y };
    return run_elementwise(ctx, &job);
}

int32_t odllm_gated_activate(odllm_context * ctx, int32_t act, const float * gate, const float * up, int64_t count, float * y) {
    if (!known_activation(act)) return ODLLM_ERR_INVALID_ARGUMENT;
    elementwise_job job = { .kind = EW_GATED, .act = act, .a = gate, .b = up, .count = count, .y = y };
    return run_elementwise(ctx, &job);
}

int32_t odllm_add(odllm_context * ctx, const float * a, const float * b, int64_t count, float * y) {
    elementwise_job job = { .kind = EW_ADD, .a = a, .b = b, .count = count, .y = y };
    return run_elementwise(ctx, &job);
}

int32_t odllm_softcap(odllm_context * ctx, const float * x, int64_t count, float cap, float * y) {
    if (!(cap > 0.0f) || isinf(cap)) return ODLLM_ERR_INVALID_ARGUMENT;
    elementwise_job job = { .kind = EW_SOFTCAP, .a = x, .cap = cap, .count = count, .y = y };
    return run_elementwise(ctx, &job);
}
