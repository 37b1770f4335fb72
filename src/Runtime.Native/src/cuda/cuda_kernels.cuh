// Device kernels of the CUDA backend and their launchers. Internal: included by odllm_cuda.cu and by the
// kernel tests (tests/test_cuda.cu), which compare each launcher against a scalar CPU reference.
// Every element-wise formula copies src/Runtime/Inference/Transformer.cs and MathOps.cs.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace odllm_cuda {

enum : int { TYPE_F32 = 0, TYPE_F16 = 1, TYPE_BF16 = 2, TYPE_INT8 = 3, TYPE_Q8_0 = 4, TYPE_Q4_0 = 5 };
enum : int { NORM_RMS = 0, NORM_RMS_PLUS_ONE = 1, NORM_LAYER = 2 };
enum : int { ACT_SILU = 0, ACT_GELU_TANH = 1, ACT_GELU_ERF = 2 };

// ---------------------------------------------------------------------------------------------
// Weight decoding: 8 consecutive weights of row `row` starting at column `col` (col % 8 == 0).
// One 16-byte load for f16/bf16, two for f32; the quantized blocks (34 and 18 bytes) are only
// 2-byte aligned, so they are read as 16-bit words.
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ float bf16_to_float(uint32_t bits) { return __uint_as_float(bits << 16); }

template <int T>
__device__ __forceinline__ void load8(const uint8_t* __restrict__ w, int64_t row, int col, int cols, int rows, float* o)
{
    if constexpr (T == TYPE_F32) {
        const float4* p = reinterpret_cast<const float4*>(w + (row * cols + col) * 4);
        float4 a = __ldg(p), b = __ldg(p + 1);
        o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w; o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
    } else if constexpr (T == TYPE_F16) {
        uint4 u = __ldg(reinterpret_cast<const uint4*>(w + (row * cols + col) * 2));
        const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
        for (int i = 0; i < 4; i++) { float2 f = __half22float2(h[i]); o[2 * i] = f.x; o[2 * i + 1] = f.y; }
    } else if constexpr (T == TYPE_BF16) {
        uint4 u = __ldg(reinterpret_cast<const uint4*>(w + (row * cols + col) * 2));
        const uint32_t words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++) { o[2 * i] = bf16_to_float(words[i] & 0xFFFFu); o[2 * i + 1] = bf16_to_float(words[i] >> 16); }
    } else if constexpr (T == TYPE_INT8) {
        // Planar: rows·cols int8 values, then one f32 scale per row.
        uint2 u = __ldg(reinterpret_cast<const uint2*>(w + row * cols + col));
        float scale = __ldg(reinterpret_cast<const float*>(w + (int64_t)rows * cols) + row);
        const int8_t* q = reinterpret_cast<const int8_t*>(&u);
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] = q[i] * scale;
    } else if constexpr (T == TYPE_Q8_0) {
        const uint8_t* block = w + (row * (cols / 32) + col / 32) * 34;
        const uint16_t* words = reinterpret_cast<const uint16_t*>(block);
        float d = __half2float(__ushort_as_half(__ldg(words)));
        int first = 1 + (col & 31) / 2;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint16_t pair = __ldg(words + first + i);
            o[2 * i] = (int8_t)(pair & 0xFF) * d;
            o[2 * i + 1] = (int8_t)(pair >> 8) * d;
        }
    } else {
        // Q4_0: element i < 16 is the low nibble of byte i, element i ≥ 16 the high nibble of byte i − 16.
        const uint8_t* block = w + (row * (cols / 32) + col / 32) * 18;
        const uint16_t* words = reinterpret_cast<const uint16_t*>(block);
        float d = __half2float(__ushort_as_half(__ldg(words)));
        int within = col & 31;
        int shift = within >= 16 ? 4 : 0;
        int first = 1 + (within & 15) / 2;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint16_t pair = __ldg(words + first + i);
            o[2 * i] = (float)((int)((pair >> shift) & 0xF) - 8) * d;
            o[2 * i + 1] = (float)((int)((pair >> (8 + shift)) & 0xF) - 8) * d;
        }
    }
}

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
    return v;
}

// Sum over the block (blockDim a multiple of 32, at most 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* shared32)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    v = lane < warps ? shared32[lane] : 0.f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* shared32)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    v = lane < warps ? shared32[lane] : -INFINITY;
    return warp_max(v);
}

// ---------------------------------------------------------------------------------------------
// Matrix products y[m, n] = x[m, k] · Wᵀ (+ bias), W [n, k] in its stored type.
// ---------------------------------------------------------------------------------------------

// Decode and short batches: one warp per output row reads the row once for all m ≤ MT inputs; each lane takes
// 8 consecutive weights per step, so a warp covers 256 columns with coalesced loads.
template <int T, int MT>
__global__ void __launch_bounds__(128) k_matmul_rows(const float* __restrict__ x, int m, int k,
                                                     const uint8_t* __restrict__ w, int n,
                                                     const float* __restrict__ bias, float* __restrict__ y)
{
    int row = (int)((blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5);
    int lane = threadIdx.x & 31;
    if (row >= n) return;
    float acc[MT];
#pragma unroll
    for (int t = 0; t < MT; t++) acc[t] = 0.f;
#pragma unroll 2
    for (int c = lane * 8; c < k; c += 256) {
        float wv[8];
        load8<T>(w, row, c, k, n, wv);
#pragma unroll
        for (int t = 0; t < MT; t++) {
            if (t < m) {
                const float4* xp = reinterpret_cast<const float4*>(x + (int64_t)t * k + c);
                float4 a = xp[0], b = xp[1];
                acc[t] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w
                        + wv[4] * b.x + wv[5] * b.y + wv[6] * b.z + wv[7] * b.w;
            }
        }
    }
#pragma unroll
    for (int t = 0; t < MT; t++) {
        float s = warp_sum(acc[t]);
        if (lane == 0 && t < m) y[(int64_t)t * n + row] = s + (bias ? bias[row] : 0.f);
    }
}

// Prefill: 64×64 output tiles over k steps of 32; both operands are staged in shared memory as f32 (the weight
// tile decoded once per step and reused by all 64 input rows), each thread computing 4×4 outputs.
constexpr int TILE_M = 64, TILE_N = 64, TILE_K = 32;

template <int T>
__global__ void __launch_bounds__(256) k_matmul_tiled(const float* __restrict__ x, int m, int k,
                                                      const uint8_t* __restrict__ w, int n,
                                                      const float* __restrict__ bias, float* __restrict__ y)
{
    __shared__ float xs[TILE_K][TILE_M + 4];
    __shared__ float ws[TILE_K][TILE_N + 4];
    int tid = threadIdx.x;
    int m0 = blockIdx.y * TILE_M, n0 = blockIdx.x * TILE_N;
    int loadRow = tid >> 2, loadCol = (tid & 3) * 8;
    int ty = tid >> 4, tx = tid & 15;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < k; k0 += TILE_K) {
        float v[8];
        int kc = k0 + loadCol;
        bool inK = kc < k;
        if (m0 + loadRow < m && inK) {
            const float4* xp = reinterpret_cast<const float4*>(x + (int64_t)(m0 + loadRow) * k + kc);
            float4 a = xp[0], b = xp[1];
            v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) v[j] = 0.f;
        }
#pragma unroll
        for (int j = 0; j < 8; j++) xs[loadCol + j][loadRow] = v[j];
        if (n0 + loadRow < n && inK) load8<T>(w, n0 + loadRow, kc, k, n, v);
        else {
#pragma unroll
            for (int j = 0; j < 8; j++) v[j] = 0.f;
        }
#pragma unroll
        for (int j = 0; j < 8; j++) ws[loadCol + j][loadRow] = v[j];
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < TILE_K; kk++) {
            float4 a = *reinterpret_cast<const float4*>(&xs[kk][ty * 4]);
            float4 b = *reinterpret_cast<const float4*>(&ws[kk][tx * 4]);
            float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int r = m0 + ty * 4 + i;
        if (r >= m) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int c = n0 + tx * 4 + j;
            if (c < n) y[(int64_t)r * n + c] = acc[i][j] + (bias ? bias[c] : 0.f);
        }
    }
}

template <int T>
inline void launch_matmul_typed(const float* x, int m, int k, const uint8_t* w, int n, const float* bias, float* y,
                                cudaStream_t stream)
{
    if (m <= 8) {
        int blocks = (n + 3) / 4;
        if (m == 1) k_matmul_rows<T, 1><<<blocks, 128, 0, stream>>>(x, m, k, w, n, bias, y);
        else if (m <= 4) k_matmul_rows<T, 4><<<blocks, 128, 0, stream>>>(x, m, k, w, n, bias, y);
        else k_matmul_rows<T, 8><<<blocks, 128, 0, stream>>>(x, m, k, w, n, bias, y);
    } else {
        dim3 grid((n + TILE_N - 1) / TILE_N, (m + TILE_M - 1) / TILE_M);
        k_matmul_tiled<T><<<grid, 256, 0, stream>>>(x, m, k, w, n, bias, y);
    }
}

// k must be a multiple of 8 (32 for the block types); x and y row starts 16-byte aligned.
inline void launch_matmul(const float* x, int m, int k, const uint8_t* w, int type, int n, const float* bias, float* y,
                          cudaStream_t stream)
{
    switch (type) {
    case TYPE_F32: launch_matmul_typed<TYPE_F32>(x, m, k, w, n, bias, y, stream); break;
    case TYPE_F16: launch_matmul_typed<TYPE_F16>(x, m, k, w, n, bias, y, stream); break;
    case TYPE_BF16: launch_matmul_typed<TYPE_BF16>(x, m, k, w, n, bias, y, stream); break;
    case TYPE_INT8: launch_matmul_typed<TYPE_INT8>(x, m, k, w, n, bias, y, stream); break;
    case TYPE_Q8_0: launch_matmul_typed<TYPE_Q8_0>(x, m, k, w, n, bias, y, stream); break;
    default: launch_matmul_typed<TYPE_Q4_0>(x, m, k, w, n, bias, y, stream); break;
    }
}

// ---------------------------------------------------------------------------------------------
// Activation quantization of the integer weight types (int8, q8_0, q4_0), the CPU kernels' contract
// (src/Runtime.Native/src/kernels.h): per block of 32 values of a row (the last may be shorter), d = max|x|/127,
// q = round-half-even(x · (1/d)). The GPU then multiplies q·d by the decoded weights in f32, which equals the CPU's
// Σ_b (w_d·x_d)·Σ q_w·q_x up to float summation order, so both backends see the same rounded activations.
// One warp per block of 32; y may equal x.
// ---------------------------------------------------------------------------------------------

constexpr int ACT_BLOCK = 32;

__global__ void k_quantize_activations(const float* x, float* y, int rows, int k)
{
    int blocksPerRow = (k + ACT_BLOCK - 1) / ACT_BLOCK;
    int64_t block = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    if (block >= (int64_t)rows * blocksPerRow) return;
    int row = (int)(block / blocksPerRow), b = (int)(block % blocksPerRow);
    int col = b * ACT_BLOCK + (threadIdx.x & 31);
    bool valid = col < k;
    int64_t i = (int64_t)row * k + col;
    float v = valid ? x[i] : 0.f;
    float amax = warp_max(fabsf(v));
    float d = amax / 127.f;
    float id = d != 0.f ? 1.f / d : 0.f;
    if (valid) y[i] = rintf(__fmul_rn(v, id)) * d;
}

inline void launch_quantize_activations(const float* x, float* y, int rows, int k, cudaStream_t stream)
{
    int64_t threads = (int64_t)rows * ((k + ACT_BLOCK - 1) / ACT_BLOCK) * 32;
    k_quantize_activations<<<(unsigned)((threads + 255) / 256), 256, 0, stream>>>(x, y, rows, k);
}

inline bool quantizes_activations(int type) { return type == TYPE_INT8 || type == TYPE_Q8_0 || type == TYPE_Q4_0; }

// ---------------------------------------------------------------------------------------------
// Embedding lookup (rows decoded from any stored type) times Gemma's √hidden (1 otherwise).
// ---------------------------------------------------------------------------------------------

template <int T>
__global__ void k_embed(const int32_t* __restrict__ tokens, const uint8_t* __restrict__ e, int rows, int cols,
                        float scale, float* __restrict__ x)
{
    int t = blockIdx.x;
    int64_t token = tokens[t];
    for (int c = threadIdx.x * 8; c < cols; c += blockDim.x * 8) {
        float v[8];
        load8<T>(e, token, c, cols, rows, v);
#pragma unroll
        for (int j = 0; j < 8; j++) x[(int64_t)t * cols + c + j] = v[j] * scale;
    }
}

inline void launch_embed(const int32_t* tokens, int n, const uint8_t* e, int type, int rows, int cols, float scale,
                         float* x, cudaStream_t stream)
{
    switch (type) {
    case TYPE_F32: k_embed<TYPE_F32><<<n, 128, 0, stream>>>(tokens, e, rows, cols, scale, x); break;
    case TYPE_F16: k_embed<TYPE_F16><<<n, 128, 0, stream>>>(tokens, e, rows, cols, scale, x); break;
    case TYPE_BF16: k_embed<TYPE_BF16><<<n, 128, 0, stream>>>(tokens, e, rows, cols, scale, x); break;
    case TYPE_INT8: k_embed<TYPE_INT8><<<n, 128, 0, stream>>>(tokens, e, rows, cols, scale, x); break;
    case TYPE_Q8_0: k_embed<TYPE_Q8_0><<<n, 128, 0, stream>>>(tokens, e, rows, cols, scale, x); break;
    default: k_embed<TYPE_Q4_0><<<n, 128, 0, stream>>>(tokens, e, rows, cols, scale, x); break;
    }
}

// ---------------------------------------------------------------------------------------------
// Norms: one block per row of h values. With heads > 0 the weight has one row of h per head and row r uses
// row r % heads (StableLM 2's per-head q/k LayerNorm). y may equal x.
// ---------------------------------------------------------------------------------------------

__global__ void k_norm(const float* x, float* y, const float* __restrict__ w, const float* __restrict__ b, int h,
                       int heads, int kind, float eps)
{
    __shared__ float shared32[32];
    const float* xr = x + (int64_t)blockIdx.x * h;
    float* yr = y + (int64_t)blockIdx.x * h;
    const float* wr = w + (heads > 0 ? (int64_t)(blockIdx.x % heads) * h : 0);
    if (kind == NORM_LAYER) {
        float s = 0.f;
        for (int i = threadIdx.x; i < h; i += blockDim.x) s += xr[i];
        float mean = block_sum(s, shared32) / h;
        float v = 0.f;
        for (int i = threadIdx.x; i < h; i += blockDim.x) { float d = xr[i] - mean; v += d * d; }
        float inv = 1.f / sqrtf(block_sum(v, shared32) / h + eps);
        for (int i = threadIdx.x; i < h; i += blockDim.x) yr[i] = (xr[i] - mean) * inv * wr[i] + (b ? b[i] : 0.f);
    } else {
        float s = 0.f;
        for (int i = threadIdx.x; i < h; i += blockDim.x) s += xr[i] * xr[i];
        float inv = 1.f / sqrtf(block_sum(s, shared32) / h + eps);
        bool plusOne = kind == NORM_RMS_PLUS_ONE;
        for (int i = threadIdx.x; i < h; i += blockDim.x) yr[i] = xr[i] * inv * (plusOne ? 1.f + wr[i] : wr[i]);
    }
}

inline void launch_norm(const float* x, float* y, const float* w, const float* b, int rows, int h, int heads, int kind,
                        float eps, cudaStream_t stream)
{
    int threads = h >= 1024 ? 256 : h >= 256 ? 128 : 32;
    k_norm<<<rows, threads, 0, stream>>>(x, y, w, b, h, heads, kind, eps);
}

// ---------------------------------------------------------------------------------------------
// Rotary embedding (rotate-half convention) on the first 2·half dims of every q and k head, at positions
// *pos0 + t. The angle is an f32 product as in transformers; its cos and sin are taken in double.
// ---------------------------------------------------------------------------------------------

__global__ void k_rope(float* q, float* k, int heads, int kvHeads, int d, int half, const int32_t* pos0,
                       const float* __restrict__ invFreq)
{
    int t = blockIdx.x;
    float position = (float)(*pos0 + t);
    for (int idx = threadIdx.x; idx < (heads + kvHeads) * half; idx += blockDim.x) {
        int head = idx / half, i = idx % half;
        float angle = __fmul_rn(position, invFreq[i]);
        float c = (float)cos((double)angle), s = (float)sin((double)angle);
        float* base = head < heads ? q + ((int64_t)t * heads + head) * d : k + ((int64_t)t * kvHeads + head - heads) * d;
        float x1 = base[i], x2 = base[i + half];
        base[i] = x1 * c - x2 * s;
        base[i + half] = x2 * c + x1 * s;
    }
}

inline void launch_rope(float* q, float* k, int n, int heads, int kvHeads, int d, int half, const int32_t* pos0,
                        const float* invFreq, cudaStream_t stream)
{
    k_rope<<<n, 128, 0, stream>>>(q, k, heads, kvHeads, d, half, pos0, invFreq);
}

// Appends n rows of keys and values at position *pos0.
__global__ void k_kv_store(const float* __restrict__ k, const float* __restrict__ v, float* kc, float* vc,
                           int64_t count, int kvDim, const int32_t* pos0)
{
    int64_t offset = (int64_t)(*pos0) * kvDim;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
        kc[offset + i] = k[i];
        vc[offset + i] = v[i];
    }
}

inline int grid_for(int64_t count, int threads)
{
    int64_t blocks = (count + threads - 1) / threads;
    return (int)(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

inline void launch_kv_store(const float* k, const float* v, float* kc, float* vc, int n, int kvDim, const int32_t* pos0,
                            cudaStream_t stream)
{
    int64_t count = (int64_t)n * kvDim;
    k_kv_store<<<grid_for(count, 256), 256, 0, stream>>>(k, v, kc, vc, count, kvDim, pos0);
}

// ---------------------------------------------------------------------------------------------
// Causal attention: block (t, head) for the query at position *pos0 + t over keys firstKey…pos, where a sliding
// layer sees pos − window < key ≤ pos. score = (q·k + slope·key) · scale, then cap·tanh(score/cap), softmax,
// weighted sum of values. Dynamic shared memory: d + (longest key count) floats.
// ---------------------------------------------------------------------------------------------

constexpr int ATTN_THREADS = 256;

__global__ void __launch_bounds__(ATTN_THREADS) k_attention(const float* __restrict__ q, const float* __restrict__ kc,
                                                            const float* __restrict__ vc, float* __restrict__ out,
                                                            int heads, int kvHeads, int d, const int32_t* pos0,
                                                            int window, float scale, float cap,
                                                            const float* __restrict__ slopes)
{
    extern __shared__ float smem[];
    __shared__ float shared32[32];
    float* qs = smem;
    float* scores = smem + d;
    int t = blockIdx.x, hd = blockIdx.y;
    int pos = *pos0 + t;
    int firstKey = window > 0 ? max(0, pos - window + 1) : 0;
    int count = pos - firstKey + 1;
    int g = hd / (heads / kvHeads);
    int kvDim = kvHeads * d;
    const float* qh = q + ((int64_t)t * heads + hd) * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) qs[i] = qh[i];
    __syncthreads();

    float slope = slopes ? slopes[hd] : 0.f;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int j = warp; j < count; j += warps) {
        int key = firstKey + j;
        const float* kr = kc + (int64_t)key * kvDim + (int64_t)g * d;
        float dot = 0.f;
        for (int i = lane; i < d; i += 32) dot += qs[i] * kr[i];
        dot = warp_sum(dot);
        if (lane == 0) {
            float score = __fmul_rn(__fadd_rn(dot, __fmul_rn(slope, (float)key)), scale);
            scores[j] = cap > 0.f ? cap * tanhf(score / cap) : score;
        }
    }
    __syncthreads();
    float m = -INFINITY;
    for (int j = threadIdx.x; j < count; j += blockDim.x) m = fmaxf(m, scores[j]);
    m = block_max(m, shared32);
    float s = 0.f;
    for (int j = threadIdx.x; j < count; j += blockDim.x) { float e = expf(scores[j] - m); scores[j] = e; s += e; }
    s = block_sum(s, shared32); // its barriers also publish the exponentials
    float inv = 1.f / s;
    float* oh = out + ((int64_t)t * heads + hd) * d;
    const float* vbase = vc + (int64_t)firstKey * kvDim + (int64_t)g * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float acc = 0.f;
        for (int j = 0; j < count; j++) acc += scores[j] * vbase[(int64_t)j * kvDim + i];
        oh[i] = acc * inv;
    }
}

inline size_t attention_shared_bytes(int d, int maxKeys) { return (size_t)(d + maxKeys) * sizeof(float); }

inline void launch_attention(const float* q, const float* kc, const float* vc, float* out, int n, int heads, int kvHeads,
                             int d, const int32_t* pos0, int window, float scale, float cap, const float* slopes,
                             int maxKeys, cudaStream_t stream)
{
    dim3 grid(n, heads);
    k_attention<<<grid, ATTN_THREADS, attention_shared_bytes(d, maxKeys), stream>>>(q, kc, vc, out, heads, kvHeads, d, pos0,
                                                                                    window, scale, cap, slopes);
}

// Decode (one query) splits the key range across blocks so a long cache is read by many SMs at once: block
// (head, split) handles keys firstKey + split·ATTN_CHUNK … and writes its running max, its sum of exponentials
// and its unnormalized weighted values; k_attention_combine merges the splits. The split count is fixed by the
// capacity (a captured graph replays at every position); splits past the current position write an empty part.
constexpr int ATTN_CHUNK = 64, ATTN_SPLIT_THREADS = 128;

__global__ void __launch_bounds__(ATTN_SPLIT_THREADS) k_attention_split(const float* __restrict__ q,
    const float* __restrict__ kc, const float* __restrict__ vc, float* __restrict__ partial, int heads, int kvHeads,
    int d, const int32_t* pos0, int window, float scale, float cap, const float* __restrict__ slopes)
{
    extern __shared__ float smem[];
    __shared__ float shared32[32];
    float* qs = smem;
    float* scores = smem + d;
    int hd = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
    int pos = *pos0;
    int firstKey = window > 0 ? max(0, pos - window + 1) : 0;
    int begin = firstKey + split * ATTN_CHUNK, end = min(pos + 1, begin + ATTN_CHUNK);
    int count = end - begin;
    // partial layout per head: [splits] max, [splits] sum, [splits][d] values
    float* pmax = partial + (int64_t)hd * splits * (d + 2);
    float* psum = pmax + splits;
    float* pval = psum + splits + (int64_t)split * d;
    if (count <= 0) {
        if (threadIdx.x == 0) { pmax[split] = -INFINITY; psum[split] = 0.f; }
        for (int i = threadIdx.x; i < d; i += blockDim.x) pval[i] = 0.f;
        return;
    }
    int g = hd / (heads / kvHeads);
    int kvDim = kvHeads * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) qs[i] = q[(int64_t)hd * d + i];
    __syncthreads();
    float slope = slopes ? slopes[hd] : 0.f;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int j = warp; j < count; j += warps) {
        int key = begin + j;
        const float* kr = kc + (int64_t)key * kvDim + (int64_t)g * d;
        float dot = 0.f;
        for (int i = lane; i < d; i += 32) dot += qs[i] * kr[i];
        dot = warp_sum(dot);
        if (lane == 0) {
            float score = __fmul_rn(__fadd_rn(dot, __fmul_rn(slope, (float)key)), scale);
            scores[j] = cap > 0.f ? cap * tanhf(score / cap) : score;
        }
    }
    __syncthreads();
    float m = -INFINITY;
    for (int j = threadIdx.x; j < count; j += blockDim.x) m = fmaxf(m, scores[j]);
    m = block_max(m, shared32);
    float s = 0.f;
    for (int j = threadIdx.x; j < count; j += blockDim.x) { float e = expf(scores[j] - m); scores[j] = e; s += e; }
    s = block_sum(s, shared32);
    if (threadIdx.x == 0) { pmax[split] = m; psum[split] = s; }
    const float* vbase = vc + (int64_t)begin * kvDim + (int64_t)g * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float acc = 0.f;
        for (int j = 0; j < count; j++) acc += scores[j] * vbase[(int64_t)j * kvDim + i];
        pval[i] = acc;
    }
}

__global__ void k_attention_combine(const float* __restrict__ partial, float* __restrict__ out, int d, int splits)
{
    int hd = blockIdx.x;
    const float* pmax = partial + (int64_t)hd * splits * (d + 2);
    const float* psum = pmax + splits;
    const float* pval = psum + splits;
    float m = -INFINITY;
    for (int s = 0; s < splits; s++) m = fmaxf(m, pmax[s]);
    float total = 0.f;
    for (int s = 0; s < splits; s++) total += psum[s] * expf(pmax[s] - m);  // empty splits: 0 · exp(−inf) = 0
    float inv = 1.f / total;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float acc = 0.f;
        for (int s = 0; s < splits; s++) {
            float w = expf(pmax[s] - m);
            acc += pval[(int64_t)s * d + i] * w;
        }
        out[(int64_t)hd * d + i] = acc * inv;
    }
}

inline int attention_splits(int maxKeys) { return (maxKeys + ATTN_CHUNK - 1) / ATTN_CHUNK; }
inline size_t attention_partial_floats(int heads, int d, int maxKeys) { return (size_t)heads * attention_splits(maxKeys) * (d + 2); }
inline size_t attention_split_shared_bytes(int d) { return (size_t)(d + ATTN_CHUNK) * sizeof(float); }

inline void launch_attention_decode(const float* q, const float* kc, const float* vc, float* out, float* partial, int heads,
                                    int kvHeads, int d, const int32_t* pos0, int window, float scale, float cap,
                                    const float* slopes, int maxKeys, cudaStream_t stream)
{
    int splits = attention_splits(maxKeys);
    k_attention_split<<<dim3(heads, splits), ATTN_SPLIT_THREADS, attention_split_shared_bytes(d), stream>>>(
        q, kc, vc, partial, heads, kvHeads, d, pos0, window, scale, cap, slopes);
    k_attention_combine<<<heads, 128, 0, stream>>>(partial, out, d, splits);
}

// ---------------------------------------------------------------------------------------------
// Element-wise: activation (gated: up · act(gate)), residual add, soft-capping.
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ float activate(int activation, float x)
{
    if (activation == ACT_SILU) return x / (1.f + expf(-x));
    if (activation == ACT_GELU_TANH) return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    return (float)(0.5 * (double)x * (1.0 + erf((double)x / 1.4142135623730951)));
}

__global__ void k_activate(float* up, const float* __restrict__ gate, int64_t count, int activation)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        up[i] = gate ? up[i] * activate(activation, gate[i]) : activate(activation, up[i]);
}

inline void launch_activate(float* up, const float* gate, int64_t count, int activation, cudaStream_t stream)
{
    k_activate<<<grid_for(count, 256), 256, 0, stream>>>(up, gate, count, activation);
}

__global__ void k_add(const float* a, const float* b, float* out, int64_t count)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}

inline void launch_add(const float* a, const float* b, float* out, int64_t count, cudaStream_t stream)
{
    k_add<<<grid_for(count, 256), 256, 0, stream>>>(a, b, out, count);
}

__global__ void k_softcap(float* x, int64_t count, float cap)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = cap * tanhf(x[i] / cap);
}

inline void launch_softcap(float* x, int64_t count, float cap, cudaStream_t stream)
{
    k_softcap<<<grid_for(count, 256), 256, 0, stream>>>(x, count, cap);
}

} // namespace odllm_cuda
