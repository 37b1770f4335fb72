/* odllm_attention: argument validation and the split of (query row, head group) units over the context's pool. */
#include <math.h>
#include <stdint.h>

#include "kernels.h"

enum {
    /* Below this many multiply-adds the whole call finishes before a worker would wake up. */
    ATTN_PARALLEL_MIN_WORK = 1 << 15,
    /* Each thread's scratch starts on its own cache line. */
    ATTN_SCRATCH_ALIGN_FLOATS = 16,
};

typedef struct attention_job {
    const odllm_attention_params * p;
    void (*attend)(const odllm_attn_task * task);
    const float * q;
    const uint8_t * k, * v;
    size_t elem_bytes;
    float * out;
    int64_t units;          /* n_queries · n_kv_heads · splits */
    int64_t splits;         /* chunks each group of heads sharing a KV head is cut into */
    int64_t group;          /* query heads per KV head */
    int64_t max_count;      /* most positions one query sees */
    size_t thread_floats;   /* scratch per thread */
    float * scratch;
} attention_job;

static void attention_slice(void * arg, int ith, int nth) {
    const attention_job * job = arg;
    const odllm_attention_params * p = job->p;
    const int64_t d = p->head_dim, kv_heads = p->n_kv_heads, ld = kv_heads * d;
    float * scores = job->scratch + (size_t)ith * job->thread_floats;
    float * row = scores + (job->group + job->splits - 1) / job->splits * job->max_count;

    /* Round robin: with a causal mask later rows see more keys, so contiguous ranges would load threads unevenly. */
    for (int64_t u = ith; u < job->units; u += nth) {
        const int64_t t = u / (kv_heads * job->splits), rest = u % (kv_heads * job->splits);
        const int64_t kv = rest / job->splits, s = rest % job->splits;
        const int64_t h0 = kv * job->group + s * job->group / job->splits;
        const int64_t h1 = kv * job->group + (s + 1) * job->group / job->splits; /* splits <= group: never empty */
        const int64_t pos = p->pos0 + t;
        const int64_t first = (p->window > 0 && pos - p->window + 1 > 0) ? pos - p->window + 1 : 0;
        const size_t offset = (size_t)(first * ld + kv * d) * job->elem_bytes;
        const odllm_attn_task task = {
            .q = job->q + (t * p->n_heads + h0) * d,
            .out = job->out + (t * p->n_heads + h0) * d,
            .slopes = p->alibi_slopes ? p->alibi_slopes + h0 : NULL,
            .k = job->k + offset,
            .v = job->v + offset,
            .ld = ld,
            .first_key = first,
            .count = pos - first + 1,
            .d = d,
            .heads = h1 - h0,
            .scale = p->scale,
            .softcap = p->softcap,
            .scores = scores,
            .row = row,
        };
        job->attend(&task);
    }
}

int32_t odllm_attention(odllm_context * ctx, const odllm_attention_params * params, const float * q,
                        const void * k, const void * v, float * out) {
    if (!ctx || !params || !q || !k || !v || !out) return ODLLM_ERR_NULL_POINTER;
    const odllm_attention_params p = *params;
    if (p.n_queries <= 0 || p.pos0 < 0 || p.n_heads <= 0 || p.n_kv_heads <= 0 || p.head_dim <= 0 || p.window < 0)
        return ODLLM_ERR_INVALID_SIZE;
    if (p.n_heads % p.n_kv_heads != 0) return ODLLM_ERR_INVALID_SIZE;
    if (!isfinite(p.scale) || !isfinite(p.softcap) || p.softcap < 0) return ODLLM_ERR_INVALID_SIZE;
    if (p.kv_type < ODLLM_TYPE_F32 || p.kv_type > ODLLM_TYPE_Q4_0) return ODLLM_ERR_UNKNOWN_TYPE;
    if (p.kv_type != ODLLM_TYPE_F32 && p.kv_type != ODLLM_TYPE_F16) return ODLLM_ERR_UNSUPPORTED_TYPE;
    /* Every buffer's byte size must fit a ptrdiff_t, so the index arithmetic of the slices is safe. */
    const int64_t max_floats = (int64_t)((PTRDIFF_MAX < INT64_MAX ? PTRDIFF_MAX : INT64_MAX) / sizeof(float));
    if (p.n_queries > INT64_MAX - p.pos0) return ODLLM_ERR_OVERFLOW;
    const int64_t positions = p.pos0 + p.n_queries;
    if (p.kv_positions < positions) return ODLLM_ERR_INVALID_SIZE;
    const int64_t q_row = (int64_t)p.n_heads * p.head_dim, kv_row = (int64_t)p.n_kv_heads * p.head_dim;
    if (p.n_queries > max_floats / q_row || p.kv_positions > max_floats / kv_row) return ODLLM_ERR_OVERFLOW;

    const int64_t group = p.n_heads / p.n_kv_heads;
    const int64_t max_count = (p.window > 0 && p.window < positions) ? p.window : positions;
    int nth = odllm_context_n_threads(ctx);
    const int64_t pairs = p.n_queries * p.n_heads;
    if (nth > pairs) nth = (int)pairs;
    const int64_t small = ATTN_PARALLEL_MIN_WORK / p.head_dim + 1; /* in (query, head, key) triples */
    if (pairs < small && max_count < small && pairs * max_count < small) nth = 1;
    /* Heads that share a KV head stay together (one pass over its rows) unless that leaves threads idle. */
    const int64_t rows = p.n_queries * p.n_kv_heads;
    int64_t splits = rows >= nth ? 1 : (nth + rows - 1) / rows;
    if (splits > group) splits = group;

    const int64_t chunk_heads = (group + splits - 1) / splits;
    if (chunk_heads > max_floats / max_count) return ODLLM_ERR_OVERFLOW;
    int64_t thread_floats = chunk_heads * max_count;
    const int64_t row_floats = (int64_t)ODLLM_ATTN_KEY_BLOCK * p.head_dim;
    if (thread_floats > max_floats - row_floats - ATTN_SCRATCH_ALIGN_FLOATS) return ODLLM_ERR_OVERFLOW;
    thread_floats = (thread_floats + row_floats + ATTN_SCRATCH_ALIGN_FLOATS - 1) / ATTN_SCRATCH_ALIGN_FLOATS * ATTN_SCRATCH_ALIGN_FLOATS;
    if (thread_floats > max_floats / nth) return ODLLM_ERR_OVERFLOW;

    odllm_op op;
    int status = odllm_context_begin(ctx, (size_t)(thread_floats * nth), &op);
    if (status != ODLLM_OK) return status;
    attention_job job = {
        .p = &p,
        .attend = p.kv_type == ODLLM_TYPE_F16 ? op.kernels->attend_f16 : op.kernels->attend_f32,
        .q = q, .k = k, .v = v,
        .elem_bytes = p.kv_type == ODLLM_TYPE_F16 ? 2 : 4,
        .out = out,
        .units = rows * splits,
        .splits = splits,
        .group = group,
        .max_count = max_count,
        .thread_floats = (size_t)thread_floats,
        .scratch = op.scratch,
    };
    odllm_pool_run(op.pool, nth, attention_slice, &job);
    odllm_context_end(ctx);
    return ODLLM_OK;
}
