// The CUDA backend: device-resident weights, KV cache and activations; one forward pass per call, the one-token
// decode step captured once as a CUDA graph and replayed. Mirrors src/Runtime/Inference/Transformer.cs.
#include "odllm_cuda.h"
#include "cuda_kernels.cuh"
#include "cuda_prefill.cuh"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

using namespace odllm_cuda;

namespace {

thread_local char g_error[512];

int fail(int status, const char* format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(g_error, sizeof g_error, format, args);
    va_end(args);
    return status;
}

int cuda_fail(cudaError_t e, const char* what)
{
    cudaGetLastError(); // clear a sticky launch error so the next call starts clean
    int status = e == cudaErrorMemoryAllocation ? ODLLM_CUDA_ERR_OUT_OF_MEMORY
               : (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) ? ODLLM_CUDA_ERR_NO_DEVICE
               : ODLLM_CUDA_ERR_CUDA;
    return fail(status, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

#define CK(call, what)                                      \
    do {                                                    \
        cudaError_t e_ = (call);                            \
        if (e_ != cudaSuccess) return cuda_fail(e_, what);  \
    } while (0)

struct Matrix {
    const uint8_t* data = nullptr;
    int type = 0, rows = 0, cols = 0;
};

struct Layer {
    Matrix wq, wk, wv, wo, up, down, gate;
    const float *attn_norm = nullptr, *attn_norm_bias = nullptr, *ffn_norm = nullptr, *ffn_norm_bias = nullptr;
    const float *post_attn_norm = nullptr, *post_ffn_norm = nullptr;
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr, *bup = nullptr, *bdown = nullptr;
    const float *q_norm = nullptr, *k_norm = nullptr;
    bool sliding = false;
};

int64_t matrix_bytes(int type, int64_t rows, int64_t cols)
{
    int64_t count = rows * cols;
    switch (type) {
    case TYPE_F32: return count * 4;
    case TYPE_F16:
    case TYPE_BF16: return count * 2;
    case TYPE_INT8: return count + rows * 4;
    case TYPE_Q8_0: return count / 32 * 34;
    case TYPE_Q4_0: return count / 32 * 18;
    default: return -1;
    }
}

} // namespace

struct odllm_cuda_model {
    int device = 0;
    odllm_cuda_config c{};
    Matrix embedding, output;
    const float *output_norm = nullptr, *output_norm_bias = nullptr, *output_bias = nullptr;
    const float *inv_freq = nullptr, *alibi_slopes = nullptr;
    std::vector<Layer> layers;
    std::vector<void*> allocations;
    int64_t weight_bytes = 0;

    ~odllm_cuda_model()
    {
        for (void* p : allocations) cudaFree(p);
    }

    // Vectors are f32; matrices of the block types are split into quants and scales on the way (upload_matrix).
    int upload(const void* host, int64_t bytes, const void** device, int type = TYPE_F32)
    {
        void* p = nullptr;
        CK(cudaMalloc(&p, (size_t)bytes), "cudaMalloc of weights");
        allocations.push_back(p);
        CK(upload_matrix(p, host, bytes, type), "uploading weights");
        weight_bytes += bytes;
        *device = p;
        return ODLLM_CUDA_OK;
    }

    int vector(const float* host, int64_t count, const float** device, bool required, const char* what)
    {
        *device = nullptr;
        if (!host) return required ? fail(ODLLM_CUDA_ERR_INVALID, "the %s vector is missing", what) : ODLLM_CUDA_OK;
        return upload(host, count * 4, reinterpret_cast<const void**>(device));
    }

    int matrix(const odllm_cuda_matrix& m, int rows, int cols, Matrix* out, const char* what, const void* shareHost = nullptr,
               const Matrix* shared = nullptr)
    {
        if (!m.data) return fail(ODLLM_CUDA_ERR_INVALID, "the %s matrix is missing", what);
        if (m.rows != rows || m.cols != cols)
            return fail(ODLLM_CUDA_ERR_INVALID, "the %s matrix is [%d, %d] but the config needs [%d, %d]", what, m.rows, m.cols,
                        rows, cols);
        if (m.type < TYPE_F32 || m.type > TYPE_Q4_0) return fail(ODLLM_CUDA_ERR_INVALID, "the %s matrix has unknown type %d", what, m.type);
        // The kernels decode 8 columns at a time (a whole 32-block for q8_0/q4_0).
        if (cols % 8 != 0 || ((m.type == TYPE_Q8_0 || m.type == TYPE_Q4_0) && cols % 32 != 0))
            return fail(ODLLM_CUDA_ERR_INVALID, "the %s matrix has %d columns; the CUDA kernels need a multiple of 8 (32 for q8_0/q4_0)",
                        what, cols);
        int64_t need = matrix_bytes(m.type, rows, cols);
        if (m.bytes != need)
            return fail(ODLLM_CUDA_ERR_INVALID, "the %s matrix holds %lld bytes but [%d, %d] of type %d needs %lld", what,
                        (long long)m.bytes, rows, cols, m.type, (long long)need);
        out->type = m.type; out->rows = rows; out->cols = cols;
        if (shared && shareHost == m.data) { out->data = shared->data; return ODLLM_CUDA_OK; }
        return upload(m.data, m.bytes, reinterpret_cast<const void**>(&out->data), m.type);
    }
};

struct odllm_cuda_sequence {
    odllm_cuda_model* model = nullptr;
    int capacity = 0;
    int max_keys = 0;  // longest key range a query can see: the attention kernel's shared-memory size
    bool flash = false;  // prefill attention on tensor cores (the head dim fits it and the device's shared memory)
    cudaStream_t stream = nullptr;
    int kv_type = KV_F32;
    void* kv = nullptr;  // [layer][k|v][capacity][kv_dim] of kv_type
    float* partial = nullptr;  // split-KV decode attention: per head and split, max, sum and values
    unsigned* counters = nullptr;  // zeroed: the gated GEMV's per-block-of-32-rows completion counters
    // Activations for up to `rows` positions at once.
    int rows = 0, logit_rows = 0;
    float *x = nullptr, *xn = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr, *att_out = nullptr;
    float *up = nullptr, *gate = nullptr, *ffn_out = nullptr, *logits = nullptr;
    // The current matrix input quantized for the integer weight types: int8 values, block scales, q·d in f32.
    int8_t* xq8 = nullptr;
    float *xqd = nullptr, *xqf = nullptr;
    // One decoded row's FFN hidden, quantized by the gated GEMV for the down GEMV: int8 values, block scales.
    int8_t* hq8 = nullptr;
    float* hqd = nullptr;
    float *rope_cos = nullptr, *rope_sin = nullptr;  // [capacity][rotary_dim / 2]
    int32_t* d_io = nullptr;  // [0] = pos0, [1…] = tokens
    int32_t* h_io = nullptr;  // pinned mirror of d_io
    float* h_logits = nullptr;  // pinned
    float* out_host = nullptr;  // the caller's page-locked logits buffer (odllm_cuda_sequence_set_output)
    int64_t out_count = 0;
    cudaGraphExec_t graph = nullptr;

    ~odllm_cuda_sequence()
    {
        release_buffers();
        release_logits();
        if (out_host) cudaHostUnregister(out_host);
        if (graph) cudaGraphExecDestroy(graph);
        cudaFree(kv);
        cudaFree(partial);
        cudaFree(counters);
        cudaFree(rope_cos);
        cudaFree(rope_sin);
        if (stream) cudaStreamDestroy(stream);
    }

    void release_buffers()
    {
        for (float* p : {x, xn, q, k, v, att, att_out, up, gate, ffn_out, xqd, xqf, hqd}) cudaFree(p);
        cudaFree(xq8);
        cudaFree(hq8);
        cudaFree(d_io);
        cudaFreeHost(h_io);
        x = xn = q = k = v = att = att_out = up = gate = ffn_out = xqd = xqf = hqd = nullptr;
        xq8 = hq8 = nullptr;
        d_io = nullptr; h_io = nullptr;
        rows = 0;
    }

    void release_logits()
    {
        cudaFree(logits);
        cudaFreeHost(h_logits);
        logits = nullptr; h_logits = nullptr;
        logit_rows = 0;
    }

    void* keys(int layer) const
    {
        const auto& c = model->c;
        return static_cast<char*>(kv) + (int64_t)layer * 2 * capacity * c.kv_heads * c.head_dim * (int64_t)kv_element_bytes(kv_type);
    }
    void* values(int layer) const
    {
        const auto& c = model->c;
        return static_cast<char*>(keys(layer)) + (int64_t)capacity * c.kv_heads * c.head_dim * (int64_t)kv_element_bytes(kv_type);
    }

    int ensure(int n, int logitRows)
    {
        const auto& c = model->c;
        if (n > rows) {
            // The captured graph points at the old buffers.
            if (graph) { cudaGraphExecDestroy(graph); graph = nullptr; }
            release_buffers();
            int64_t h = c.hidden, qd = (int64_t)c.heads * c.head_dim, kvd = (int64_t)c.kv_heads * c.head_dim, f = c.ffn;
            int64_t widest = std::max(std::max(h, qd), f);
            struct { float** p; int64_t per; } plan[] = {{&x, h}, {&xn, h}, {&att_out, h}, {&ffn_out, h}, {&q, qd}, {&att, qd},
                                                         {&k, kvd}, {&v, kvd}, {&up, f}, {&gate, f}, {&xqf, widest},
                                                         {&xqd, widest / ACT_BLOCK + 1}};
            for (auto& b : plan) CK(cudaMalloc(reinterpret_cast<void**>(b.p), (size_t)(b.per * n * 4)), "cudaMalloc of activations");
            CK(cudaMalloc(reinterpret_cast<void**>(&xq8), (size_t)(widest * n)), "cudaMalloc of activations");
            CK(cudaMalloc(reinterpret_cast<void**>(&hq8), (size_t)f), "cudaMalloc of activations");
            CK(cudaMalloc(reinterpret_cast<void**>(&hqd), (size_t)(f / ACT_BLOCK + 1) * 4), "cudaMalloc of activations");
            CK(cudaMalloc(reinterpret_cast<void**>(&d_io), (size_t)(n + 1) * 4), "cudaMalloc of token ids");
            CK(cudaMallocHost(reinterpret_cast<void**>(&h_io), (size_t)(n + 1) * 4), "cudaMallocHost of token ids");
            rows = n;
        }
        if (logitRows > logit_rows) {
            if (graph) { cudaGraphExecDestroy(graph); graph = nullptr; }
            release_logits();
            size_t bytes = (size_t)logitRows * c.vocab * 4;
            CK(cudaMalloc(reinterpret_cast<void**>(&logits), bytes), "cudaMalloc of logits");
            CK(cudaMallocHost(reinterpret_cast<void**>(&h_logits), bytes), "cudaMallocHost of logits");
            logit_rows = logitRows;
        }
        return ODLLM_CUDA_OK;
    }

    // A matrix input: f32 values, whether xq8/xqd hold its quantized copy (written by the producer), and whether xqf
    // holds that copy's values as f32 (only the kernels that multiply in f32 read it; the tensor-core products don't).
    // A quantized copy lives in xq8/xqd unless q and qd name other buffers.
    struct Input {
        const float* f;
        bool quantized;
        bool quantizedF32;
        const int8_t* q = nullptr;
        const float* qd = nullptr;
    };

    static bool needs_int(const Matrix& w) { return w.data && quantizes_activations(w.type); }
    static bool uses_mma(const Matrix& w, int n) { return needs_int(w) && matmul_uses_mma(w.type, n, w.cols); }
    // Whether an integer-type product over n rows of k inputs reads the f32 copy (the GEMVs and the f32 tiles do).
    static bool reads_f32_copy(int n, int k) { return !(n > 8 && k % 32 == 0); }

    void quantize_for(Input& in, int n, int k, bool f32)
    {
        if (in.quantized && (in.quantizedF32 || !f32)) return;
        launch_quantize(in.f, xq8, xqd, f32 ? xqf : nullptr, n, k, stream);
        in.quantized = true;
        in.quantizedF32 = f32;
        in.q = nullptr;
        in.qd = nullptr;
    }

    Input norm_rows(const float* in, const float* w, const float* b, float* out, int n, bool quantize)
    {
        const auto& c = model->c;
        bool f32 = quantize && reads_f32_copy(n, c.hidden);
        launch_norm(in, out, w, b, n, c.hidden, 0, c.norm_kind, c.norm_eps, stream, quantize ? xq8 : nullptr, xqd, f32 ? xqf : nullptr);
        return {out, quantize, f32};
    }

    // The matrices of one launch (GemvArgs::m, MmaArgs::m) with their biases and outputs; returns how many.
    static int describe(GemvMatrix (&m)[3], std::initializer_list<const Matrix*> ms, std::initializer_list<const float*> biases,
                        std::initializer_list<float*> outs)
    {
        int i = 0;
        for (const Matrix* w : ms) m[i++] = GemvMatrix{w->data, nullptr, nullptr, w->rows};
        i = 0;
        for (const float* b : biases) m[i++].bias = b;
        i = 0;
        for (float* y : outs) m[i++].y = y;
        return (int)ms.size();
    }

    // One tensor-core launch over up to three integer matrices of one type sharing the input (n > 8 rows).
    void mma(Input& in, int n, std::initializer_list<const Matrix*> ms, std::initializer_list<const float*> biases,
             std::initializer_list<float*> outs, int mode, const float* resid = nullptr)
    {
        const Matrix& w0 = **ms.begin();
        quantize_for(in, n, w0.cols, reads_f32_copy(n, w0.cols));
        MmaArgs a{};
        a.count = describe(a.m, ms, biases, outs);
        a.rows = n;
        a.k = w0.cols;
        a.mode = mode;
        a.activation = model->c.activation;
        a.xq = in.q ? in.q : xq8;
        a.xd = in.q ? in.qd : xqd;
        a.resid = resid;
        launch_matmul_mma(a, w0.type, stream);
    }

    // Whether a decode GEMV over w reads its input's f32 copy (xqf) rather than the int8 values.
    static bool gemv_reads_f32_copy(const Matrix& w) { return !gemv_uses_int(w.type, w.cols); }

    // One launch over up to three matrices of one type sharing the input (decode only, n = 1). GATED with quantizeOut
    // also writes the output quantized into hq8/hqd.
    void gemv(Input& in, std::initializer_list<const Matrix*> ms, std::initializer_list<const float*> biases,
              std::initializer_list<float*> outs, int mode, const float* resid = nullptr, const float* extra = nullptr,
              bool quantizeOut = false)
    {
        const Matrix& w0 = **ms.begin();
        bool integer = needs_int(w0);
        if (integer) quantize_for(in, 1, w0.cols, gemv_reads_f32_copy(w0));
        GemvArgs a{};
        a.count = describe(a.m, ms, biases, outs);
        a.k = w0.cols;
        a.mode = mode;
        a.activation = model->c.activation;
        a.x = integer ? xqf : in.f;
        a.xq = in.q ? in.q : xq8;
        a.xd = in.q ? in.qd : xqd;
        a.resid = resid;
        a.extra = extra;
        if (quantizeOut) {
            a.yq = hq8;
            a.yd = hqd;
            a.counters = counters;
        }
        launch_gemv(a, w0.type, stream);
    }

    // out = in·Wᵀ + bias for n rows: the decode GEMV for one row, the tiled kernel otherwise.
    void project(Input& in, int n, const Matrix& w, const float* bias, float* out)
    {
        if (n == 1) { gemv(in, {&w}, {bias}, {out}, GEMV_PLAIN); return; }
        if (uses_mma(w, n)) { mma(in, n, {&w}, {bias}, {out}, GEMV_PLAIN); return; }
        if (needs_int(w)) quantize_for(in, n, w.cols, reads_f32_copy(n, w.cols));
        launch_matmul(needs_int(w) ? xqf : in.f, n, w.cols, w.data, w.type, w.rows, bias, out, stream);
    }

    // up ← act(gate(x)) · up(x) (or act(up(x))), one fused launch; returns the down product's input. Decoding with
    // integer weights, the gated GEMV also hands it over quantized (hq8/hqd).
    Input feed_forward(const Layer& w, Input& in, int n)
    {
        const auto& c = model->c;
        Input hidden{up, false, false};
        if (n == 1 && !w.gate.data) { gemv(in, {&w.up}, {w.bup}, {up}, GEMV_ACTIVATE); return hidden; }
        if (n == 1 && w.gate.type == w.up.type) {
            // The down GEMV's int8 input comes out of this one, without a launch of its own.
            bool quantized = needs_int(w.down) && !gemv_reads_f32_copy(w.down);
            gemv(in, {&w.gate, &w.up}, {nullptr, w.bup}, {gate, up}, GEMV_GATED, nullptr, nullptr, quantized);
            if (quantized) hidden = Input{up, true, false, hq8, hqd};
            return hidden;
        }
        if (!w.gate.data && uses_mma(w.up, n)) { mma(in, n, {&w.up}, {w.bup}, {up}, GEMV_ACTIVATE); return hidden; }
        if (w.gate.data && uses_mma(w.gate, n) && w.gate.type == w.up.type) {
            // Quantizing the hidden in this product's epilogue measured slower (H100, q4: 27 443 vs 27 899 tok/s).
            mma(in, n, {&w.gate, &w.up}, {nullptr, w.bup}, {gate, up}, GEMV_GATED);
            return hidden;
        }
        project(in, n, w.up, w.bup, up);
        if (w.gate.data) {
            project(in, n, w.gate, nullptr, gate);
            launch_activate(up, gate, (int64_t)n * c.ffn, c.activation, stream);
        } else {
            launch_activate(up, nullptr, (int64_t)n * c.ffn, c.activation, stream);
        }
        return hidden;
    }

    // Enqueues one forward pass over n tokens (ids and pos0 already in h_io) on the stream, ending with the logits in
    // device memory (the caller copies them out). Everything it launches reads positions from device memory, so a
    // capture replays. One-token steps fuse the residual adds and the gate into the products; the arithmetic per
    // element is the same.
    void enqueue(int n, bool allPositions)
    {
        const auto& c = model->c;
        int h = c.hidden, d = c.head_dim;
        const int32_t* pos0 = d_io;
        const int32_t* tokens = d_io + 1;
        bool decode = n == 1;
        cudaMemcpyAsync(d_io, h_io, (size_t)(n + 1) * 4, cudaMemcpyHostToDevice, stream);
        const Matrix& e = model->embedding;
        launch_embed(tokens, n, e.data, e.type, e.rows, e.cols, c.embed_scale, x, stream);
        int64_t hn = (int64_t)n * h;
        for (int l = 0; l < c.layers; l++) {
            const Layer& w = model->layers[l];
            bool ffnInt = needs_int(w.up) || needs_int(w.gate);
            Input xin = norm_rows(x, w.attn_norm, w.attn_norm_bias, xn, n, needs_int(w.wq) || needs_int(w.wk) || needs_int(w.wv));
            bool qkvOneType = w.wq.type == w.wk.type && w.wk.type == w.wv.type;
            if (decode && qkvOneType) {
                gemv(xin, {&w.wq, &w.wk, &w.wv}, {w.bq, w.bk, w.bv}, {q, k, v}, GEMV_PLAIN);
            } else if (qkvOneType && uses_mma(w.wq, n)) {
                mma(xin, n, {&w.wq, &w.wk, &w.wv}, {w.bq, w.bk, w.bv}, {q, k, v}, GEMV_PLAIN);
            } else {
                project(xin, n, w.wq, w.bq, q);
                project(xin, n, w.wk, w.bk, k);
                project(xin, n, w.wv, w.bv, v);
            }
            if (w.q_norm) launch_norm(q, q, w.q_norm, nullptr, n * c.heads, d, c.heads, NORM_LAYER, c.norm_eps, stream);
            if (w.k_norm) launch_norm(k, k, w.k_norm, nullptr, n * c.kv_heads, d, c.kv_heads, NORM_LAYER, c.norm_eps, stream);
            // Decoding, the attention kernel applies RoPE and appends k and v itself (not after a per-head q/k norm).
            bool ropeInAttention = decode && !w.q_norm && !w.k_norm;
            if (!ropeInAttention)
                launch_rope_store(q, k, v, keys(l), values(l), kv_type, n, c.heads, c.kv_heads, d, c.rotary_dim / 2, pos0, rope_cos,
                                  rope_sin, stream);
            int window = w.sliding ? c.sliding_window : 0;
            Input ain{att, false, false};
            if (decode) {
                // The o GEMV's input comes quantized out of the attention's last kernel.
                bool quantize = needs_int(w.wo);
                bool f32 = gemv_reads_f32_copy(w.wo);
                ain.quantized = launch_attention_decode(q, keys(l), values(l), kv_type, att, partial, c.heads, c.kv_heads, d, pos0, window,
                                                        c.attn_scale, c.attn_softcap, model->alibi_slopes, max_keys, stream,
                                                        quantize ? xq8 : nullptr, xqd, f32 ? xqf : nullptr,
                                                        ropeInAttention ? AttentionRope{k, v, rope_cos, rope_sin, c.rotary_dim / 2}
                                                                        : AttentionRope{});
                ain.quantizedF32 = ain.quantized && f32;
            }
            else if (flash)
                launch_flash_attention(q, keys(l), values(l), kv_type, att, n, c.heads, c.kv_heads, d, pos0, window, c.attn_scale,
                                       c.attn_softcap, model->alibi_slopes, stream);
            else
                launch_attention(q, keys(l), values(l), kv_type, att, n, c.heads, c.kv_heads, d, pos0, window, c.attn_scale,
                                 c.attn_softcap, model->alibi_slopes, max_keys, stream);
            switch (c.layout) {
            case 0: { // sequential: x += o(att); x += ffn(ffn_norm(x))
                if (decode) gemv(ain, {&w.wo}, {w.bo}, {x}, GEMV_RESIDUAL, x);
                else if (uses_mma(w.wo, n)) mma(ain, n, {&w.wo}, {w.bo}, {x}, GEMV_RESIDUAL, x);
                else { project(ain, n, w.wo, w.bo, att_out); launch_add(x, att_out, x, hn, stream); }
                Input fin = norm_rows(x, w.ffn_norm, w.ffn_norm_bias, xn, n, ffnInt);
                Input uin = feed_forward(w, fin, n);
                if (decode) gemv(uin, {&w.down}, {w.bdown}, {x}, GEMV_RESIDUAL, x);
                else if (uses_mma(w.down, n)) mma(uin, n, {&w.down}, {w.bdown}, {x}, GEMV_RESIDUAL, x);
                else { project(uin, n, w.down, w.bdown, ffn_out); launch_add(x, ffn_out, x, hn, stream); }
                break;
            }
            case 1: { // parallel: x += ffn(norm(x)) + o(att), with one shared norm or a separate MLP norm (Falcon-40B)
                project(ain, n, w.wo, w.bo, att_out);
                // Without an MLP norm the attention norm's output is reused; its quantized copy was overwritten by att's.
                Input fin = w.ffn_norm ? norm_rows(x, w.ffn_norm, w.ffn_norm_bias, xn, n, ffnInt) : Input{xn, false, false};
                Input uin = feed_forward(w, fin, n);
                if (decode) gemv(uin, {&w.down}, {w.bdown}, {x}, GEMV_RESIDUAL, x, att_out);
                else {
                    project(uin, n, w.down, w.bdown, ffn_out);
                    launch_add(ffn_out, att_out, ffn_out, hn, stream);
                    launch_add(x, ffn_out, x, hn, stream);
                }
                break;
            }
            default: { // sandwich: x += post_norm(o(att)); x += post_norm(ffn(ffn_norm(x)))
                project(ain, n, w.wo, w.bo, att_out);
                norm_rows(att_out, w.post_attn_norm, nullptr, att_out, n, false);
                launch_add(x, att_out, x, hn, stream);
                Input fin = norm_rows(x, w.ffn_norm, nullptr, xn, n, ffnInt);
                Input uin = feed_forward(w, fin, n);
                project(uin, n, w.down, w.bdown, ffn_out);
                norm_rows(ffn_out, w.post_ffn_norm, nullptr, ffn_out, n, false);
                launch_add(x, ffn_out, x, hn, stream);
                break;
            }
            }
        }
        int first = allPositions ? 0 : n - 1, count = n - first;
        Input fin = norm_rows(x + (int64_t)first * h, model->output_norm, model->output_norm_bias, xn, count, needs_int(model->output));
        project(fin, count, model->output, model->output_bias, logits);
        int64_t logitCount = (int64_t)count * c.vocab;
        if (c.final_softcap > 0) launch_softcap(logits, logitCount, c.final_softcap, stream);
    }
};

extern "C" {

ODLLM_CUDA_API int odllm_cuda_abi_version(void) { return ODLLM_CUDA_ABI_VERSION; }

ODLLM_CUDA_API const char* odllm_cuda_last_error(void) { return g_error; }

ODLLM_CUDA_API int odllm_cuda_device_count(int32_t* count)
{
    if (!count) return fail(ODLLM_CUDA_ERR_INVALID, "count is NULL");
    *count = 0;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) return cuda_fail(e, "cudaGetDeviceCount");
    *count = n;
    return ODLLM_CUDA_OK;
}

ODLLM_CUDA_API int odllm_cuda_device_info(int32_t device, char* name, int32_t name_capacity, int32_t* cc_major,
                                          int32_t* cc_minor, int64_t* total_memory)
{
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
    if (name && name_capacity > 0) snprintf(name, (size_t)name_capacity, "%s", p.name);
    if (cc_major) *cc_major = p.major;
    if (cc_minor) *cc_minor = p.minor;
    if (total_memory) *total_memory = (int64_t)p.totalGlobalMem;
    return ODLLM_CUDA_OK;
}

ODLLM_CUDA_API int odllm_cuda_model_create(int32_t device, const odllm_cuda_config* config,
                                           const odllm_cuda_matrix* embedding, const odllm_cuda_matrix* output,
                                           const float* output_norm, const float* output_norm_bias,
                                           const float* output_bias, const odllm_cuda_layer* layers,
                                           const float* inv_freq, const float* alibi_slopes, odllm_cuda_model** model)
{
    if (!config || !embedding || !output || !layers || !model) return fail(ODLLM_CUDA_ERR_INVALID, "a required argument is NULL");
    *model = nullptr;
    const odllm_cuda_config& c = *config;
    if (c.vocab <= 0 || c.hidden <= 0 || c.layers <= 0 || c.heads <= 0 || c.kv_heads <= 0 || c.head_dim <= 0 || c.ffn <= 0
        || c.heads % c.kv_heads != 0 || c.rotary_dim < 0 || c.rotary_dim > c.head_dim || c.rotary_dim % 2 != 0
        || c.norm_kind < 0 || c.norm_kind > 2 || c.activation < 0 || c.activation > 2 || c.layout < 0 || c.layout > 2)
        return fail(ODLLM_CUDA_ERR_INVALID, "the model config is inconsistent (sizes, head counts, rotary dims or kinds)");
    if (c.head_dim > ATTN_MAX_HEAD_DIM)
        return fail(ODLLM_CUDA_ERR_INVALID, "head dim %d is larger than the CUDA attention kernels' %d", c.head_dim, ATTN_MAX_HEAD_DIM);
    if (c.hidden % 8 != 0 || c.head_dim % 8 != 0 || c.ffn % 8 != 0)
        return fail(ODLLM_CUDA_ERR_INVALID, "hidden size %d, head dim %d and FFN size %d must be multiples of 8 for the CUDA kernels",
                    c.hidden, c.head_dim, c.ffn);
    if (c.rotary_dim > 0 && !inv_freq) return fail(ODLLM_CUDA_ERR_INVALID, "inv_freq is NULL with a rotary embedding");
    CK(cudaSetDevice(device), "cudaSetDevice");

    auto* m = new (std::nothrow) odllm_cuda_model();
    if (!m) return fail(ODLLM_CUDA_ERR_OUT_OF_MEMORY, "out of host memory");
    m->device = device;
    m->c = c;
    int qDim = c.heads * c.head_dim, kvDim = c.kv_heads * c.head_dim;
    int s = m->matrix(*embedding, c.vocab, c.hidden, &m->embedding, "token embedding");
    if (s == ODLLM_CUDA_OK) s = m->matrix(*output, c.vocab, c.hidden, &m->output, "output", embedding->data, &m->embedding);
    if (s == ODLLM_CUDA_OK) s = m->vector(output_norm, c.hidden, &m->output_norm, true, "output norm");
    if (s == ODLLM_CUDA_OK) s = m->vector(output_norm_bias, c.hidden, &m->output_norm_bias, false, "output norm bias");
    if (s == ODLLM_CUDA_OK) s = m->vector(output_bias, c.vocab, &m->output_bias, false, "output bias");
    if (s == ODLLM_CUDA_OK && c.rotary_dim > 0) s = m->vector(inv_freq, c.rotary_dim / 2, &m->inv_freq, true, "inv_freq");
    if (s == ODLLM_CUDA_OK) s = m->vector(alibi_slopes, c.heads, &m->alibi_slopes, false, "ALiBi slopes");
    m->layers.resize((size_t)c.layers);
    for (int l = 0; l < c.layers && s == ODLLM_CUDA_OK; l++) {
        const odllm_cuda_layer& in = layers[l];
        Layer& w = m->layers[(size_t)l];
        w.sliding = in.sliding != 0;
        if (s == ODLLM_CUDA_OK) s = m->matrix(in.wq, qDim, c.hidden, &w.wq, "attention q");
        if (s == ODLLM_CUDA_OK) s = m->matrix(in.wk, kvDim, c.hidden, &w.wk, "attention k");
        if (s == ODLLM_CUDA_OK) s = m->matrix(in.wv, kvDim, c.hidden, &w.wv, "attention v");
        if (s == ODLLM_CUDA_OK) s = m->matrix(in.wo, c.hidden, qDim, &w.wo, "attention output");
        if (s == ODLLM_CUDA_OK) s = m->matrix(in.up, c.ffn, c.hidden, &w.up, "FFN up");
        if (s == ODLLM_CUDA_OK) s = m->matrix(in.down, c.hidden, c.ffn, &w.down, "FFN down");
        if (s == ODLLM_CUDA_OK && in.gate.data) s = m->matrix(in.gate, c.ffn, c.hidden, &w.gate, "FFN gate");
        bool sequentialOrSandwich = c.layout != 1;
        if (s == ODLLM_CUDA_OK) s = m->vector(in.attn_norm, c.hidden, &w.attn_norm, true, "attention norm");
        if (s == ODLLM_CUDA_OK) s = m->vector(in.attn_norm_bias, c.hidden, &w.attn_norm_bias, false, "attention norm bias");
        if (s == ODLLM_CUDA_OK) s = m->vector(in.ffn_norm, c.hidden, &w.ffn_norm, sequentialOrSandwich, "FFN norm");
        if (s == ODLLM_CUDA_OK) s = m->vector(in.ffn_norm_bias, c.hidden, &w.ffn_norm_bias, false, "FFN norm bias");
        if (s == ODLLM_CUDA_OK) s = m->vector(in.post_attn_norm, c.hidden, &w.post_attn_norm, c.layout == 2, "post-attention norm");
        if (s == ODLLM_CUDA_OK) s = m->vector(in.post_ffn_norm, c.hidden, &w.post_ffn_norm, c.layout == 2, "post-FFN norm");
        if (s == ODLLM_CUDA_OK) s = m->vector(in.bq, qDim, &w.bq, false, "q bias");
        if (s == ODLLM_CUDA_OK) s = m->vector(in.bk, kvDim, &w.bk, false, "k bias");
        if (s == ODLLM_CUDA_OK) s = m->vector(in.bv, kvDim, &w.bv, false, "v bias");
        if (s == ODLLM_CUDA_OK) s = m->vector(in.bo, c.hidden, &w.bo, false, "attention output bias");
        if (s == ODLLM_CUDA_OK) s = m->vector(in.bup, c.ffn, &w.bup, false, "FFN up bias");
        if (s == ODLLM_CUDA_OK) s = m->vector(in.bdown, c.hidden, &w.bdown, false, "FFN down bias");
        if (s == ODLLM_CUDA_OK) s = m->vector(in.q_norm, qDim, &w.q_norm, false, "q norm");
        if (s == ODLLM_CUDA_OK) s = m->vector(in.k_norm, kvDim, &w.k_norm, false, "k norm");
    }
    if (s != ODLLM_CUDA_OK) { delete m; return s; }
    *model = m;
    return ODLLM_CUDA_OK;
}

ODLLM_CUDA_API void odllm_cuda_model_free(odllm_cuda_model* model) { delete model; }

ODLLM_CUDA_API int64_t odllm_cuda_model_weight_bytes(const odllm_cuda_model* model) { return model ? model->weight_bytes : 0; }

ODLLM_CUDA_API int odllm_cuda_sequence_create(odllm_cuda_model* model, int32_t capacity, int32_t kv_type,
                                              odllm_cuda_sequence** sequence)
{
    if (!model || !sequence) return fail(ODLLM_CUDA_ERR_INVALID, "a required argument is NULL");
    *sequence = nullptr;
    if (capacity <= 0) return fail(ODLLM_CUDA_ERR_INVALID, "the context length must be at least 1, not %d", capacity);
    if (kv_type != KV_F32 && kv_type != KV_F16)
        return fail(ODLLM_CUDA_ERR_INVALID, "the KV cache type must be 0 (f32) or 1 (f16), not %d", kv_type);
    const auto& c = model->c;
    CK(cudaSetDevice(model->device), "cudaSetDevice");
    int maxKeys = capacity;
    bool anySliding = false, anyFull = false;
    for (const auto& l : model->layers) (l.sliding ? anySliding : anyFull) = true;
    if (anySliding && !anyFull && c.sliding_window > 0) maxKeys = std::min(capacity, c.sliding_window);
    size_t shared = attention_shared_bytes(c.head_dim, maxKeys);
    int optin = 0;
    CK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, model->device), "cudaDeviceGetAttribute");
    if (shared + 128 > (size_t)optin)
        return fail(ODLLM_CUDA_ERR_INVALID, "a context of %d positions needs %zu bytes of shared memory in the attention kernel; "
                    "this device allows %d (use a shorter context)", capacity, shared, optin);
    size_t splitShared = attention_split_shared_bytes(c.heads, c.kv_heads, c.head_dim, kv_type);
    if (std::max(shared, splitShared) + 128 > (size_t)optin)
        return fail(ODLLM_CUDA_ERR_INVALID, "the attention kernels need %zu bytes of shared memory; this device allows %d",
                    std::max(shared, splitShared), optin);
    CK(attention_set_shared(shared), "cudaFuncSetAttribute");
    CK(attention_split_set_shared(splitShared), "cudaFuncSetAttribute");
    CK(matmul_mma_prepare(), "cudaFuncSetAttribute");
    bool flash = flash_attention_prepare(c.head_dim, kv_type, optin);
    cudaGetLastError();  // a refused attribute leaves the f32 kernel in use, not an error

    auto* s = new (std::nothrow) odllm_cuda_sequence();
    if (!s) return fail(ODLLM_CUDA_ERR_OUT_OF_MEMORY, "out of host memory");
    s->model = model;
    s->capacity = capacity;
    s->max_keys = maxKeys;
    s->flash = flash;
    s->kv_type = kv_type;
    cudaError_t e = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) {
        size_t bytes = (size_t)c.layers * 2 * capacity * c.kv_heads * c.head_dim * kv_element_bytes(kv_type);
        e = cudaMalloc(&s->kv, bytes);
    }
    size_t counterBytes = (size_t)(c.ffn / ACT_BLOCK + 1) * sizeof(unsigned);
    if (e == cudaSuccess) e = cudaMalloc(reinterpret_cast<void**>(&s->counters), counterBytes);
    if (e == cudaSuccess) e = cudaMemset(s->counters, 0, counterBytes);
    if (e == cudaSuccess)
        e = cudaMalloc(reinterpret_cast<void**>(&s->partial), attention_partial_floats(c.heads, c.head_dim, maxKeys) * sizeof(float));
    // cos/sin of every position once; a model without rotary dims (ALiBi) still gets valid, unused pointers.
    int half = std::max(1, c.rotary_dim / 2);
    if (e == cudaSuccess) e = cudaMalloc(reinterpret_cast<void**>(&s->rope_cos), (size_t)capacity * half * sizeof(float));
    if (e == cudaSuccess) e = cudaMalloc(reinterpret_cast<void**>(&s->rope_sin), (size_t)capacity * half * sizeof(float));
    if (e == cudaSuccess && c.rotary_dim > 0) {
        launch_rope_table(s->rope_cos, s->rope_sin, capacity, c.rotary_dim / 2, model->inv_freq, s->stream);
        e = cudaStreamSynchronize(s->stream);
    }
    if (e != cudaSuccess) { delete s; return cuda_fail(e, "creating the KV cache"); }
    int status = s->ensure(1, 1);
    if (status != ODLLM_CUDA_OK) { delete s; return status; }
    *sequence = s;
    return ODLLM_CUDA_OK;
}

ODLLM_CUDA_API void odllm_cuda_sequence_free(odllm_cuda_sequence* sequence) { delete sequence; }

ODLLM_CUDA_API int odllm_cuda_sequence_forward(odllm_cuda_sequence* s, const int32_t* tokens, int32_t n, int32_t pos0,
                                               int32_t all_positions, int32_t use_graph, float* logits)
{
    if (!s || !tokens || !logits) return fail(ODLLM_CUDA_ERR_INVALID, "a required argument is NULL");
    const auto& c = s->model->c;
    if (n <= 0 || pos0 < 0 || (int64_t)pos0 + n > s->capacity)
        return fail(ODLLM_CUDA_ERR_INVALID, "positions %d to %d do not fit a context of %d", pos0, pos0 + n - 1, s->capacity);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c.vocab)
            return fail(ODLLM_CUDA_ERR_INVALID, "token id %d at index %d is outside the vocabulary (0 to %d)", tokens[i], i, c.vocab - 1);
    CK(cudaSetDevice(s->model->device), "cudaSetDevice");
    bool all = all_positions != 0 && n > 1;
    int logitRows = all ? n : 1;
    int status = s->ensure(n, logitRows);
    if (status != ODLLM_CUDA_OK) return status;
    s->h_io[0] = pos0;
    memcpy(s->h_io + 1, tokens, (size_t)n * 4);

    if (n == 1 && use_graph) {
        if (!s->graph) {
            cudaGraph_t graph = nullptr;
            CK(cudaStreamBeginCapture(s->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
            s->enqueue(1, false);
            cudaError_t e = cudaStreamEndCapture(s->stream, &graph);
            if (e != cudaSuccess) return cuda_fail(e, "capturing the decode step");
            e = cudaGraphInstantiate(&s->graph, graph, 0);
            cudaGraphDestroy(graph);
            if (e != cudaSuccess) { s->graph = nullptr; return cuda_fail(e, "instantiating the decode graph"); }
        }
        CK(cudaGraphLaunch(s->graph, s->stream), "launching the decode graph");
    } else {
        s->enqueue(n, all);
        CK(cudaGetLastError(), "launching the forward pass");
    }
    // Into the caller's buffer when it is the page-locked one, else through h_logits: a host copy of the vocabulary's
    // logits (1 MB for Gemma) took ~70 µs per decoded token on the H100 machine, 4–7% of a step.
    size_t bytes = (size_t)logitRows * c.vocab * 4;
    bool direct = logits == s->out_host && (int64_t)logitRows * c.vocab <= s->out_count;
    CK(cudaMemcpyAsync(direct ? logits : s->h_logits, s->logits, bytes, cudaMemcpyDeviceToHost, s->stream), "copying the logits");
    CK(cudaStreamSynchronize(s->stream), "running the forward pass");
    if (!direct) memcpy(logits, s->h_logits, bytes);
    return ODLLM_CUDA_OK;
}

ODLLM_CUDA_API int odllm_cuda_sequence_set_output(odllm_cuda_sequence* s, float* host, int64_t count)
{
    if (!s) return fail(ODLLM_CUDA_ERR_INVALID, "the sequence is NULL");
    if (host && count < s->model->c.vocab)
        return fail(ODLLM_CUDA_ERR_INVALID, "an output buffer of %lld values holds less than one row of %d logits", (long long)count,
                    s->model->c.vocab);
    CK(cudaSetDevice(s->model->device), "cudaSetDevice");
    if (s->out_host) {
        cudaHostUnregister(s->out_host);
        s->out_host = nullptr;
        s->out_count = 0;
    }
    if (!host) return ODLLM_CUDA_OK;
    CK(cudaHostRegister(host, (size_t)count * 4, cudaHostRegisterDefault), "page-locking the output buffer");
    s->out_host = host;
    s->out_count = count;
    return ODLLM_CUDA_OK;
}

ODLLM_CUDA_API int odllm_cuda_measure_bandwidth(int32_t device, int64_t bytes, double* bytes_per_second)
{
    if (!bytes_per_second || bytes <= 0) return fail(ODLLM_CUDA_ERR_INVALID, "bad bandwidth measurement arguments");
    CK(cudaSetDevice(device), "cudaSetDevice");
    void *a = nullptr, *b = nullptr;
    cudaEvent_t start = nullptr, stop = nullptr;
    int status = ODLLM_CUDA_OK;
    std::vector<float> times;
    cudaError_t e = cudaMalloc(&a, (size_t)bytes);
    if (e == cudaSuccess) e = cudaMalloc(&b, (size_t)bytes);
    if (e == cudaSuccess) e = cudaMemset(a, 1, (size_t)bytes);
    if (e == cudaSuccess) e = cudaEventCreate(&start);
    if (e == cudaSuccess) e = cudaEventCreate(&stop);
    for (int i = 0; i < 12 && e == cudaSuccess; i++) {
        e = cudaEventRecord(start);
        if (e == cudaSuccess) e = cudaMemcpy(b, a, (size_t)bytes, cudaMemcpyDeviceToDevice);
        if (e == cudaSuccess) e = cudaEventRecord(stop);
        if (e == cudaSuccess) e = cudaEventSynchronize(stop);
        float ms = 0;
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, start, stop);
        if (i >= 2) times.push_back(ms);  // the first copies warm up clocks and the TLB
    }
    if (e != cudaSuccess) status = cuda_fail(e, "measuring the device bandwidth");
    else {
        std::sort(times.begin(), times.end());
        *bytes_per_second = 2.0 * (double)bytes / (times[times.size() / 2] * 1e-3);
    }
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    cudaFree(a);
    cudaFree(b);
    return status;
}

} // extern "C"
