// Device kernels of the CUDA backend and their launchers. Internal: included by odllm_cuda.cu and by the
// kernel tests (tests/test_cuda.cu), which compare each launcher against a scalar CPU reference.
// Every element-wise formula copies src/Runtime/Inference/Transformer.cs and MathOps.cs.
#pragma once

#include <algorithm>
#include <cstdlib>

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace odllm_cuda {

enum : int { TYPE_F32 = 0, TYPE_F16 = 1, TYPE_BF16 = 2, TYPE_INT8 = 3, TYPE_Q8_0 = 4, TYPE_Q4_0 = 5 };
enum : int { NORM_RMS = 0, NORM_RMS_PLUS_ONE = 1, NORM_LAYER = 2 };
enum : int { ACT_SILU = 0, ACT_GELU_TANH = 1, ACT_GELU_ERF = 2 };

// ---------------------------------------------------------------------------------------------
// Device layout of the block types. A stored q8_0/q4_0 block (an f16 scale, then 32 or 16 bytes of quants: 34 or 18
// bytes) is only 2-byte aligned, which costs the kernels funnel shifts and narrow loads. On upload the blocks are split
// into their parts, the same bytes in two arrays: every row's quants one after another ([rows][blocks][32 or 16]
// bytes), then every block's scale ([rows][blocks] f16). Quants are then 16-byte aligned and a row's are contiguous.
// The other types keep their stored layout (int8: [rows][cols] values, then one f32 scale per row).
// ---------------------------------------------------------------------------------------------

template <int T> struct Blocks {
    static constexpr int quantBytes = T == TYPE_Q8_0 ? 32 : 16;  // quants of one block of 32
};

// The quants of block b of `row` (blocks per row: `blocks`).
template <int T>
__device__ __forceinline__ const uint8_t* block_quants(const uint8_t* w, int64_t row, int blocks, int b)
{
    return w + (row * blocks + b) * Blocks<T>::quantBytes;
}

// The scales array of a matrix of `rows` rows in the split layout.
template <int T>
__device__ __forceinline__ const __half* block_scales(const uint8_t* w, int64_t rows, int blocks)
{
    return reinterpret_cast<const __half*>(w + rows * blocks * Blocks<T>::quantBytes);
}

// One thread per block: stored blocks → split layout.
__global__ void k_split_blocks(const uint8_t* __restrict__ stored, uint8_t* __restrict__ split, int64_t count, int quantBytes)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const uint16_t* in = reinterpret_cast<const uint16_t*>(stored + i * (quantBytes + 2));
    uint16_t* quants = reinterpret_cast<uint16_t*>(split + i * quantBytes);
    for (int j = 0; j < quantBytes / 2; j++) quants[j] = in[1 + j];
    reinterpret_cast<uint16_t*>(split + count * quantBytes)[i] = in[0];
}

// Copies a matrix of `bytes` host bytes in its stored layout to device memory `dst` in its device layout.
inline cudaError_t upload_matrix(void* dst, const void* host, int64_t bytes, int type)
{
    if (type != TYPE_Q8_0 && type != TYPE_Q4_0) return cudaMemcpy(dst, host, (size_t)bytes, cudaMemcpyHostToDevice);
    int quantBytes = type == TYPE_Q8_0 ? 32 : 16;
    int64_t count = bytes / (quantBytes + 2);
    void* stored = nullptr;
    cudaError_t e = cudaMalloc(&stored, (size_t)bytes);
    if (e == cudaSuccess) e = cudaMemcpy(stored, host, (size_t)bytes, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
        k_split_blocks<<<(unsigned)((count + 255) / 256), 256>>>(static_cast<const uint8_t*>(stored), static_cast<uint8_t*>(dst), count,
                                                                 quantBytes);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (stored) cudaFree(stored);
    return e;
}

// ---------------------------------------------------------------------------------------------
// Weight decoding: 8 consecutive weights of row `row` starting at column `col` (col % 8 == 0), from the device layout.
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
    } else {
        int blocks = cols / 32, b = col / 32, within = col & 31;
        float d = __half2float(block_scales<T>(w, rows, blocks)[row * blocks + b]);
        if constexpr (T == TYPE_Q8_0) {
            uint2 u = __ldg(reinterpret_cast<const uint2*>(block_quants<T>(w, row, blocks, b) + within));
            const int8_t* q = reinterpret_cast<const int8_t*>(&u);
#pragma unroll
            for (int i = 0; i < 8; i++) o[i] = q[i] * d;
        } else {
            // Q4_0: element i < 16 is the low nibble of byte i, element i ≥ 16 the high nibble of byte i − 16.
            uint2 u = __ldg(reinterpret_cast<const uint2*>(block_quants<T>(w, row, blocks, b) + (within & 15)));
            const uint8_t* q = reinterpret_cast<const uint8_t*>(&u);
            int shift = within >= 16 ? 4 : 0;
#pragma unroll
            for (int i = 0; i < 8; i++) o[i] = (float)((int)((q[i] >> shift) & 0xF) - 8) * d;
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

// Blocks for a grid-stride loop over count elements.
inline int grid_for(int64_t count, int threads)
{
    int64_t blocks = (count + threads - 1) / threads;
    return (int)(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

// ---------------------------------------------------------------------------------------------
// Launches. Every kernel is launched with programmatic dependent launch (sm_90; a no-op before): the next kernel of
// the stream is scheduled while this one's last blocks run, does what needs no earlier result (the GEMVs request their
// first weights), then waits in grid_wait() until its predecessor has completed and its writes are visible.
// So every kernel calls grid_wait() before it touches memory another kernel writes — and every kernel calls it, or
// it could complete before its own predecessor and release its successor too early. ODLLM_CUDA_PDL=0 launches
// plainly (for A/B runs and debugging).
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ void grid_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

inline bool dependent_launch_allowed()
{
    static const bool allowed = [] {
        const char* v = std::getenv("ODLLM_CUDA_PDL");
        return !(v && v[0] == '0');
    }();
    return allowed;
}

template <typename... Params, typename... Args>
inline void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, cudaStream_t stream, Args... args)
{
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = shared;
    config.stream = stream;
    config.attrs = &attribute;
    config.numAttrs = dependent_launch_allowed() ? 1 : 0;
    cudaLaunchKernelEx(&config, kernel, args...);
}

// cp.async (sm_80+): 16 bytes from global to shared memory without passing through registers, so a warp can keep
// several loads in flight for the price of shared memory; wait<N> returns once at most N committed groups are pending.
__device__ __forceinline__ void cp_async16(void* shared, const void* global)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"((uint32_t)__cvta_generic_to_shared(shared)), "l"(global));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

// The activations of MathOps.Activate: SiLU, tanh-approximate GELU in f32, exact GELU in double.
__device__ __forceinline__ float activate(int activation, float x)
{
    if (activation == ACT_SILU) return x / (1.f + expf(-x));
    if (activation == ACT_GELU_TANH) return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    return (float)(0.5 * (double)x * (1.0 + erf((double)x / 1.4142135623730951)));
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
    grid_wait();
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
    grid_wait();
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
        if (m == 1) launch(k_matmul_rows<T, 1>, blocks, 128, 0, stream, x, m, k, w, n, bias, y);
        else if (m <= 4) launch(k_matmul_rows<T, 4>, blocks, 128, 0, stream, x, m, k, w, n, bias, y);
        else launch(k_matmul_rows<T, 8>, blocks, 128, 0, stream, x, m, k, w, n, bias, y);
    } else {
        dim3 grid((n + TILE_N - 1) / TILE_N, (m + TILE_M - 1) / TILE_M);
        launch(k_matmul_tiled<T>, grid, 256, 0, stream, x, m, k, w, n, bias, y);
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
// q = round-half-even(x · (1/d)). The decode GEMV multiplies q with the weights' integers (dp4a) as the CPU does;
// the other products multiply q·d by the decoded weights in f32, which equals the CPU's Σ_b (w_d·x_d)·Σ q_w·q_x up
// to float summation order. Either way both backends see the same rounded activations.
// ---------------------------------------------------------------------------------------------

constexpr int ACT_BLOCK = 32;

// Quantizes one block of 32 held by a warp (lane i: element i; invalid lanes pass 0 and write nothing).
__device__ __forceinline__ void quantize_block32(float v, bool valid, int64_t i, int64_t block, int8_t* q, float* qd, float* qf)
{
    float amax = warp_max(fabsf(v));
    float d = amax / 127.f;
    float id = d != 0.f ? 1.f / d : 0.f;
    float r = rintf(__fmul_rn(v, id));
    if (valid) {
        q[i] = (int8_t)r;
        if (qf) qf[i] = r * d;
    }
    if ((threadIdx.x & 31) == 0) qd[block] = d;
}

// Writes the int8 values q, the block scales qd ([rows][⌈k/32⌉]) and, when qf is set, q·d as f32 for the kernels
// that multiply in f32. Eight lanes per block of 32, four consecutive values each (16-byte loads where k is a
// multiple of 4), the same formula as quantize_block32 (a warp per block took 83 µs for a prefill's FFN hidden,
// 1024 × 16384, on an H100; in one call this kernel took Gemma-2B prefill q4 32 390 → 33 220–33 380, q8 31 770–31 800 →
// 32 470–32 560 tok/s).
__global__ void k_quantize(const float* x, int8_t* q, float* qd, float* qf, int rows, int k)
{
    grid_wait();
    int blocksPerRow = (k + ACT_BLOCK - 1) / ACT_BLOCK;
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, block = t >> 3;
    bool inRange = block < (int64_t)rows * blocksPerRow;  // the others take part in the shuffles only
    int row = inRange ? (int)(block / blocksPerRow) : 0, col = inRange ? (int)(block % blocksPerRow) * ACT_BLOCK + (int)(t & 7) * 4 : 0;
    int64_t i = (int64_t)row * k + col;
    bool whole = inRange && (k & 3) == 0 && col + 4 <= k;
    float v[4];
    if (whole) {
        float4 f = *reinterpret_cast<const float4*>(x + i);
        v[0] = f.x; v[1] = f.y; v[2] = f.z; v[3] = f.w;
    } else {
#pragma unroll
        for (int j = 0; j < 4; j++) v[j] = inRange && col + j < k ? x[i + j] : 0.f;
    }
    float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, o));
    float d = amax / 127.f;
    float id = d != 0.f ? 1.f / d : 0.f;
    float r[4];
#pragma unroll
    for (int j = 0; j < 4; j++) r[j] = rintf(__fmul_rn(v[j], id));
    if (!inRange) return;
    if (whole) {
        *reinterpret_cast<char4*>(q + i) = make_char4((signed char)r[0], (signed char)r[1], (signed char)r[2], (signed char)r[3]);
        if (qf) *reinterpret_cast<float4*>(qf + i) = make_float4(r[0] * d, r[1] * d, r[2] * d, r[3] * d);
    } else {
        for (int j = 0; j < 4 && col + j < k; j++) {
            q[i + j] = (int8_t)r[j];
            if (qf) qf[i + j] = r[j] * d;
        }
    }
    if ((t & 7) == 0) qd[block] = d;
}

inline void launch_quantize(const float* x, int8_t* q, float* qd, float* qf, int rows, int k, cudaStream_t stream)
{
    int64_t threads = (int64_t)rows * ((k + ACT_BLOCK - 1) / ACT_BLOCK) * 8;
    launch(k_quantize, (unsigned)((threads + 255) / 256), 256, 0, stream, x, q, qd, qf, rows, k);
}

inline bool quantizes_activations(int type) { return type == TYPE_INT8 || type == TYPE_Q8_0 || type == TYPE_Q4_0; }

// ---------------------------------------------------------------------------------------------
// Decode GEMV: one input row, up to three matrices of one type in one launch (rows concatenated: q, k and v share a
// launch), and the step after the product fused in: the bias, the gate (up·act(gate)), the activation, or the residual
// add. The integer types with k a multiple of 256 multiply int8 activations with dp4a (block sums exact, as the CPU
// kernels' contract); q8_0/q4_0 rows stream their split-layout quants through a ring in shared memory (row_products).
// Other cases use the f32 row dot of k_matmul_rows.
// ---------------------------------------------------------------------------------------------

enum : int { GEMV_PLAIN = 0, GEMV_GATED = 1, GEMV_ACTIVATE = 2, GEMV_RESIDUAL = 3 };

struct GemvMatrix {
    const uint8_t* w;
    const float* bias;
    float* y;
    int rows;
};

struct GemvArgs {
    GemvMatrix m[3];
    int count;          // matrices; GATED: m[0] gate, m[1] up, output in m[1].y
    int k, mode, activation;
    const float* x;     // f32 input (for the integer types: q·d)
    const int8_t* xq;   // int8 input and its block scales, for the dp4a path
    const float* xd;
    const float* resid; // RESIDUAL: y = resid + ((dot + bias) + extra)
    const float* extra;
    // GATED only, optional: the output quantized as k_quantize would (yf may be NULL), by the block that completes
    // each block of 32 rows; counters holds one zeroed counter per block of 32 rows and is left zeroed.
    int8_t* yq;
    float* yd;
    float* yf;
    unsigned* counters;
};

// A warp streams its rows through a ring of GEMV_STAGES slots of GEMV_SLOT_VECTORS 16-byte vectors: GEMV_SLOT_QUANTS
// of quants (1 KB: 32 q8_0 or 64 q4_0 blocks), then their scales.
constexpr int GEMV_WARPS = 4, GEMV_STAGES = 4, GEMV_SLOT_QUANTS = 64, GEMV_SLOT_VECTORS = 72;


template <int T>
__device__ __forceinline__ float row_dot_f32(const uint8_t* __restrict__ w, int row, int rows, int k, const float* __restrict__ x)
{
    int lane = threadIdx.x & 31;
    float acc = 0.f;
#pragma unroll 4
    for (int c = lane * 8; c < k; c += 256) {
        float wv[8];
        load8<T>(w, row, c, k, rows, wv);
        const float4* xp = reinterpret_cast<const float4*>(x + c);
        float4 a = xp[0], b = xp[1];
        acc += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w + wv[4] * b.x + wv[5] * b.y + wv[6] * b.z + wv[7] * b.w;
    }
    return acc;
}

// Σ_b Σ q_w·q_x of one planar int8 row (its row scale and the activation scales applied by the caller per block).
__device__ __forceinline__ float row_dot_int8(const uint8_t* __restrict__ w, int row, int k, const int8_t* __restrict__ xq,
                                              const float* __restrict__ xd)
{
    int lane = threadIdx.x & 31;
    const uint4* wr = reinterpret_cast<const uint4*>(w + (int64_t)row * k);
    float acc = 0.f;
#pragma unroll 4
    for (int b = lane; b < k / 32; b += 32) {
        uint4 w0 = __ldg(wr + 2 * b), w1 = __ldg(wr + 2 * b + 1);
        const int4* xv = reinterpret_cast<const int4*>(xq + (int64_t)b * 32);
        int4 x0 = xv[0], x1 = xv[1];
        int s = __dp4a((int)w0.x, x0.x, 0);
        s = __dp4a((int)w0.y, x0.y, s); s = __dp4a((int)w0.z, x0.z, s); s = __dp4a((int)w0.w, x0.w, s);
        s = __dp4a((int)w1.x, x1.x, s); s = __dp4a((int)w1.y, x1.y, s); s = __dp4a((int)w1.z, x1.z, s); s = __dp4a((int)w1.w, x1.w, s);
        acc = fmaf((float)s, xd[b], acc);
    }
    return acc;
}

// Σ q_w·q_x of one 16-byte vector of quants with its inputs: q8_0 16 weights (half a block) with x0; q4_0 a whole
// block, byte j holding element j (low nibble) and j + 16 (high nibble), multiplied as 0…15 with 8·Σx taken off
// after (Σ (q − 8)·x = Σ q·x − 8·Σ x; sumx = Σ x of the block).
template <int T>
__device__ __forceinline__ int vector_dot(uint4 w, int4 x0, int4 x1, int sumx)
{
    if constexpr (T == TYPE_Q8_0) {
        int s = __dp4a((int)w.x, x0.x, 0);
        s = __dp4a((int)w.y, x0.y, s);
        s = __dp4a((int)w.z, x0.z, s);
        return __dp4a((int)w.w, x0.w, s);
    } else {
        const uint32_t q[4] = {w.x, w.y, w.z, w.w};
        const int lo[4] = {x0.x, x0.y, x0.z, x0.w}, hi[4] = {x1.x, x1.y, x1.z, x1.w};
        int s = -8 * sumx;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            s = __dp4a((int)(q[j] & 0x0F0F0F0Fu), lo[j], s);
            s = __dp4a((int)((q[j] >> 4) & 0x0F0F0F0Fu), hi[j], s);
        }
        return s;
    }
}

// Output row g of the launch: its matrix and the row within it (q, k and v rows are numbered one after another).
struct GemvRow {
    int matrix, row;
};

__device__ __forceinline__ GemvRow locate_row(const GemvArgs& a, int g)
{
    int mi = 0;
    while (mi + 1 < a.count && g >= a.m[mi].rows) g -= a.m[mi++].rows;
    return {mi, g};
}

// The rows of one product: row g of matrix part 0 (GATED: part 0 the gate row, part 1 the up row).
__device__ __forceinline__ const uint8_t* part_matrix(const GemvArgs& a, GemvRow r, int part)
{
    return a.mode == GEMV_GATED ? a.m[part].w : a.m[r.matrix].w;
}

// Sum over the LANES lanes (a power of two) that share a row; every one of them gets it.
template <int LANES>
__device__ __forceinline__ float group_sum(float v)
{
#pragma unroll
    for (int o = LANES / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}

// The q8_0/q4_0 products of rows g0 … g0 + ROWS − 1 (GATED: of their gate and up rows; ROWS > 1 only for one matrix
// or GATED, whose rows are consecutive), each shared by 32 / ROWS lanes, over blocks from … to − 1 (a multiple of 8
// apart, from a multiple of 8), as one stream of chunks copied with cp.async into the warp's ring of slots,
// GEMV_STAGES − 1 chunks ahead of the one being multiplied, without holding them in registers (on an H100, Gemma-2B q4
// decode 691–709 tok/s with batches of four vectors per lane loaded into registers instead, 783–806 with the ring). A
// slot holds a chunk of each row: its quants (GEMV_SLOT_QUANTS / ROWS vectors) and, after all rows' quants, their scales. Each lane
// multiplies two vectors of a slot (q8_0: two per block, q4_0: one). Several rows per warp spread a row's fixed cost
// (set-up, reduction, epilogue) over more blocks. The first chunks are requested before grid_wait(), since the
// weights do not depend on the previous kernel. Returns, in every lane, its row's reduced products in d0 (and d1).
template <int T, int ROWS>
__device__ __forceinline__ void row_products(const GemvArgs& a, int g0, int total, int from, int to, uint4* ring, float& d0,
                                             float& d1)
{
    constexpr int LANES = 32 / ROWS, PER_BLOCK = T == TYPE_Q8_0 ? 2 : 1;
    constexpr int rowVectors = GEMV_SLOT_QUANTS / ROWS, chunkBlocks = rowVectors / PER_BLOCK, scaleVectors = chunkBlocks / 8;
    static_assert(GEMV_SLOT_QUANTS + ROWS * scaleVectors <= GEMV_SLOT_VECTORS && chunkBlocks % 8 == 0, "a chunk fits a slot, in whole vectors");
    int lane = threadIdx.x & 31, sub = lane & (LANES - 1), mine = lane / LANES;
    int blocks = a.k / 32;
    int rowsHere = min(ROWS, total - g0);
    bool two = a.mode == GEMV_GATED;
    GemvRow r = locate_row(a, g0);
    const uint8_t* quants[2];
    const __half* scales[2];
#pragma unroll
    for (int part = 0; part < 2; part++) {
        const uint8_t* w = part_matrix(a, r, two ? part : 0);
        int rows = two ? a.m[part].rows : a.m[r.matrix].rows;
        quants[part] = block_quants<T>(w, r.row, blocks, 0);
        scales[part] = block_scales<T>(w, rows, blocks) + (int64_t)r.row * blocks;
    }
    // The stream: chunks from, from + chunkBlocks, … of the rows, then of their second rows. Requests run
    // GEMV_STAGES − 1 ahead.
    int reqPart = 0, reqBlock = from, slot = 0;
    auto request = [&]() {
        if (reqPart < (two ? 2 : 1)) {
            int chunk = min(chunkBlocks, to - reqBlock);
            int qv = chunk * PER_BLOCK, sv = chunk / 8;
            const uint4* q = reinterpret_cast<const uint4*>((reqPart ? quants[1] : quants[0]) + (int64_t)reqBlock * Blocks<T>::quantBytes);
            const uint4* d = reinterpret_cast<const uint4*>((reqPart ? scales[1] : scales[0]) + reqBlock);
            uint4* dst = ring + slot * GEMV_SLOT_VECTORS;
            if (chunk == chunkBlocks && rowsHere == ROWS) {
                // Whole chunks of every row: the common case, without divisions by run-time counts.
#pragma unroll
                for (int i = lane; i < ROWS * (rowVectors + scaleVectors); i += 32) {
                    if (i < ROWS * rowVectors) {
                        int rr = i / rowVectors, j = i % rowVectors;
                        cp_async16(dst + i, q + (int64_t)rr * blocks * PER_BLOCK + j);
                    } else {
                        int rr = (i - ROWS * rowVectors) / scaleVectors, j = (i - ROWS * rowVectors) % scaleVectors;
                        cp_async16(dst + i, d + (int64_t)rr * blocks / 8 + j);
                    }
                }
            } else {
                for (int i = lane; i < rowsHere * (qv + sv); i += 32) {
                    if (i < rowsHere * qv) {
                        int rr = i / qv, j = i - rr * qv;
                        cp_async16(dst + rr * rowVectors + j, q + (int64_t)rr * blocks * PER_BLOCK + j);
                    } else {
                        int rr = (i - rowsHere * qv) / sv, j = i - rowsHere * qv - rr * sv;
                        cp_async16(dst + GEMV_SLOT_QUANTS + rr * scaleVectors + j, d + (int64_t)rr * blocks / 8 + j);
                    }
                }
            }
            reqBlock += chunkBlocks;
            if (reqBlock >= to) { reqBlock = from; reqPart++; }
        }
        cp_async_commit();
        slot = slot + 1 == GEMV_STAGES ? 0 : slot + 1;
    };
#pragma unroll
    for (int s = 0; s < GEMV_STAGES - 1; s++) request();
    grid_wait();
    float acc0 = 0.f, acc1 = 0.f;
    int use = 0;
    for (int part = 0; part < (two ? 2 : 1); part++) {
        for (int c0 = from; c0 < to; c0 += chunkBlocks) {
            request();  // into the slot the previous step finished with
            cp_async_wait<GEMV_STAGES - 1>();
            __syncwarp();
            const uint4* q = ring + use * GEMV_SLOT_VECTORS + mine * rowVectors;
            const __half* d = reinterpret_cast<const __half*>(ring + use * GEMV_SLOT_VECTORS + GEMV_SLOT_QUANTS + mine * scaleVectors);
            int qv = min(chunkBlocks, to - c0) * PER_BLOCK;
            float dot = 0.f;
#pragma unroll
            for (int t = 0; t < 2; t++) {
                int v = sub + t * LANES;
                if (mine < rowsHere && v < qv) {
                    int b = c0 + v / PER_BLOCK;  // block of the row
                    const int4* xv = reinterpret_cast<const int4*>(a.xq + (int64_t)c0 * 32 + v * (32 / PER_BLOCK));
                    int4 x0 = xv[0], x1 = PER_BLOCK == 1 ? xv[1] : make_int4(0, 0, 0, 0);
                    int sumx = 0;
                    if constexpr (T == TYPE_Q4_0) {
                        const int xs[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
#pragma unroll
                        for (int j = 0; j < 8; j++) sumx = __dp4a(xs[j], 0x01010101, sumx);
                    }
                    dot = fmaf((float)vector_dot<T>(q[v], x0, x1, sumx), __half2float(d[v / PER_BLOCK]) * a.xd[b], dot);
                }
            }
            if (part) acc1 += dot;
            else acc0 += dot;
            use = use + 1 == GEMV_STAGES ? 0 : use + 1;
            __syncwarp();
        }
    }
    d0 = group_sum<LANES>(acc0);
    d1 = two ? group_sum<LANES>(acc1) : 0.f;
}

// GATED with yq set: each block of 32 rows is written by 32 / rowsPerBlock thread blocks; the last of them to finish
// (a counter per block of rows, reset by that block) quantizes it, reading the rows through L2, where the others'
// writes are. Every warp of the block calls it.
__device__ __forceinline__ void quantize_completed_rows(const GemvArgs& a, const float* y, int rows, int rowsPerBlock, bool* last)
{
    int group = blockIdx.x * rowsPerBlock / ACT_BLOCK;
    int groupRows = min(ACT_BLOCK, rows - group * ACT_BLOCK);
    unsigned writers = (unsigned)((groupRows + rowsPerBlock - 1) / rowsPerBlock);
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        *last = atomicAdd(a.counters + group, 1u) + 1 == writers;
        if (*last) a.counters[group] = 0;
    }
    __syncthreads();
    if (*last && threadIdx.x < 32) {
        __threadfence();
        int i = group * ACT_BLOCK + threadIdx.x;
        bool valid = (int)threadIdx.x < groupRows;
        quantize_block32(valid ? __ldcg(y + i) : 0.f, valid, i, group, a.yq, a.yd, a.yf);
    }
}

// ROWS output rows per warp (GATED: gate and up row pairs), or one row per KSPLIT warps of a block, each taking a
// 1/KSPLIT of k (not GATED): what a long row needs to keep enough warps streaming. ROWS and KSPLIT > 1 for the block
// types only.
template <int T, bool INT, int ROWS, int KSPLIT>
__global__ void __launch_bounds__(GEMV_WARPS * 32, 8) k_gemv(GemvArgs a)
{
    constexpr bool BLOCKS = INT && (T == TYPE_Q8_0 || T == TYPE_Q4_0);
    static_assert(BLOCKS || (ROWS == 1 && KSPLIT == 1), "several rows per warp or warps per row for the block types only");
    static_assert(ROWS == 1 || KSPLIT == 1, "not both");
    constexpr int LANES = 32 / ROWS;
    __shared__ uint4 rings[BLOCKS ? GEMV_WARPS * GEMV_STAGES * GEMV_SLOT_VECTORS : 1];
    __shared__ float partial[GEMV_WARPS];
    __shared__ bool last;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int unit = blockIdx.x * GEMV_WARPS + warp, share = unit % KSPLIT;
    int g0 = unit / KSPLIT * ROWS, g = g0 + lane / LANES;
    bool gated = a.mode == GEMV_GATED;
    int total = gated ? a.m[1].rows : a.m[0].rows + (a.count > 1 ? a.m[1].rows : 0) + (a.count > 2 ? a.m[2].rows : 0);
    if (KSPLIT == 1 && g0 >= total) {
        grid_wait();
        if (gated && a.yq) quantize_completed_rows(a, a.m[1].y, total, GEMV_WARPS * ROWS, &last);
        return;
    }
    float d0 = 0.f, d1 = 0.f;
    if constexpr (BLOCKS) {
        int blocks = a.k / 32, per = blocks / KSPLIT;
        if (g0 < total)
            row_products<T, ROWS>(a, g0, total, share * per, share == KSPLIT - 1 ? blocks : (share + 1) * per,
                                  rings + warp * GEMV_STAGES * GEMV_SLOT_VECTORS, d0, d1);
        else grid_wait();
        if constexpr (KSPLIT > 1) {
            // The row's first warp adds the shares in order.
            if (lane == 0) partial[warp] = d0;
            __syncthreads();
            if (share != 0 || g0 >= total) return;
            d0 = 0.f;
#pragma unroll
            for (int i = 0; i < KSPLIT; i++) d0 += partial[warp + i];
        }
    } else {
        GemvRow r = locate_row(a, g);
        grid_wait();
        for (int part = 0; part < (gated ? 2 : 1); part++) {
            const uint8_t* w = part_matrix(a, r, part);
            int rows = gated ? a.m[part].rows : a.m[r.matrix].rows;
            float d;
            if constexpr (INT && T == TYPE_INT8)
                d = warp_sum(row_dot_int8(w, r.row, a.k, a.xq, a.xd)) * __ldg(reinterpret_cast<const float*>(w + (int64_t)rows * a.k) + r.row);
            else
                d = warp_sum(row_dot_f32<T>(w, r.row, rows, a.k, a.x));
            if (part) d1 = d;
            else d0 = d;
        }
    }
    bool writes = lane % LANES == 0 && g < total;
    if (gated) {
        if (writes) a.m[1].y[g] = (d1 + (a.m[1].bias ? a.m[1].bias[g] : 0.f)) * activate(a.activation, d0);
        if (a.yq) quantize_completed_rows(a, a.m[1].y, total, GEMV_WARPS * ROWS, &last);
        return;
    }
    if (!writes) return;
    GemvRow r = locate_row(a, g);
    const GemvMatrix& m = a.m[r.matrix];
    float v = d0 + (m.bias ? m.bias[r.row] : 0.f);
    if (a.mode == GEMV_ACTIVATE) v = activate(a.activation, v);
    else if (a.mode == GEMV_RESIDUAL) v = a.resid[r.row] + (a.extra ? v + a.extra[r.row] : v);
    m.y[r.row] = v;
}

// dp4a needs the int8 input (a.xq) and k a multiple of 256; otherwise f32.
inline bool gemv_uses_int(int type, int k) { return quantizes_activations(type) && k % 256 == 0; }

// Matrices of many rows (the gated FFN, the output head) take four rows per warp, and the grid still fills the
// device: measured on an H100, Gemma-2B decode q4 651 → 679 tok/s in the stored layout, q8 562 → 605 in the split
// one (two rows per warp: 491–501 against 465–481 for one, in a call where four gave 501–506).
inline bool gemv_rows_per_warp_4(const GemvArgs& a, int rows)
{
    return (a.mode == GEMV_GATED || a.count == 1) && rows >= 16384;
}

// Long rows on few of them (the FFN's down projection: 2048 rows of 16384) take two warps per row, each half of k:
// measured on an H100 in one call, Gemma-2B decode q4 698 → 774 tok/s, q8 548 → 572 (four warps per row, or two
// also for k = 2048, were no better in a noisier call).
inline bool gemv_warps_per_row_2(const GemvArgs& a, int rows)
{
    return a.mode != GEMV_GATED && a.count == 1 && a.k >= 8192 && a.k % 512 == 0 && rows < 16384;
}

template <int T>
inline void launch_gemv_typed(const GemvArgs& a, int rows, cudaStream_t stream)
{
    bool integer = gemv_uses_int(T, a.k);
    if constexpr (T == TYPE_Q4_0 || T == TYPE_Q8_0) {
        if (integer && gemv_rows_per_warp_4(a, rows)) {
            launch(k_gemv<T, true, 4, 1>, (rows + 4 * GEMV_WARPS - 1) / (4 * GEMV_WARPS), GEMV_WARPS * 32, 0, stream, a);
            return;
        }
    }
    if constexpr (T == TYPE_Q4_0 || T == TYPE_Q8_0) {
        if (integer && gemv_warps_per_row_2(a, rows)) {
            launch(k_gemv<T, true, 1, 2>, (2 * rows + GEMV_WARPS - 1) / GEMV_WARPS, GEMV_WARPS * 32, 0, stream, a);
            return;
        }
    }
    int blocks = (rows + GEMV_WARPS - 1) / GEMV_WARPS;
    if (integer) launch(k_gemv<T, true, 1, 1>, blocks, GEMV_WARPS * 32, 0, stream, a);
    else launch(k_gemv<T, false, 1, 1>, blocks, GEMV_WARPS * 32, 0, stream, a);
}

inline void launch_gemv(const GemvArgs& a, int type, cudaStream_t stream)
{
    int rows = 0;
    if (a.mode == GEMV_GATED) rows = a.m[1].rows;
    else for (int i = 0; i < a.count; i++) rows += a.m[i].rows;
    switch (type) {
    case TYPE_F32: launch_gemv_typed<TYPE_F32>(a, rows, stream); break;
    case TYPE_F16: launch_gemv_typed<TYPE_F16>(a, rows, stream); break;
    case TYPE_BF16: launch_gemv_typed<TYPE_BF16>(a, rows, stream); break;
    case TYPE_INT8: launch_gemv_typed<TYPE_INT8>(a, rows, stream); break;
    case TYPE_Q8_0: launch_gemv_typed<TYPE_Q8_0>(a, rows, stream); break;
    default: launch_gemv_typed<TYPE_Q4_0>(a, rows, stream); break;
    }
}

// ---------------------------------------------------------------------------------------------
// Embedding lookup (rows decoded from any stored type) times Gemma's √hidden (1 otherwise).
// ---------------------------------------------------------------------------------------------

template <int T>
__global__ void k_embed(const int32_t* __restrict__ tokens, const uint8_t* __restrict__ e, int rows, int cols,
                        float scale, float* __restrict__ x)
{
    grid_wait();
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
    case TYPE_F32: launch(k_embed<TYPE_F32>, n, 128, 0, stream, tokens, e, rows, cols, scale, x); break;
    case TYPE_F16: launch(k_embed<TYPE_F16>, n, 128, 0, stream, tokens, e, rows, cols, scale, x); break;
    case TYPE_BF16: launch(k_embed<TYPE_BF16>, n, 128, 0, stream, tokens, e, rows, cols, scale, x); break;
    case TYPE_INT8: launch(k_embed<TYPE_INT8>, n, 128, 0, stream, tokens, e, rows, cols, scale, x); break;
    case TYPE_Q8_0: launch(k_embed<TYPE_Q8_0>, n, 128, 0, stream, tokens, e, rows, cols, scale, x); break;
    default: launch(k_embed<TYPE_Q4_0>, n, 128, 0, stream, tokens, e, rows, cols, scale, x); break;
    }
}

// ---------------------------------------------------------------------------------------------
// Norms: one block per row of h values. With heads > 0 the weight has one row of h per head and row r uses
// row r % heads (StableLM 2's per-head q/k LayerNorm). y may equal x.
// ---------------------------------------------------------------------------------------------

__global__ void k_norm(const float* x, float* y, const float* __restrict__ w, const float* __restrict__ b, int h,
                       int heads, int kind, float eps, int8_t* q, float* qd, float* qf)
{
    grid_wait();
    __shared__ float shared32[32];
    const float* xr = x + (int64_t)blockIdx.x * h;
    float* yr = y + (int64_t)blockIdx.x * h;
    const float* wr = w + (heads > 0 ? (int64_t)(blockIdx.x % heads) * h : 0);
    float mean = 0.f, inv;
    if (kind == NORM_LAYER) {
        float s = 0.f;
#pragma unroll 4
        for (int i = threadIdx.x; i < h; i += blockDim.x) s += xr[i];
        mean = block_sum(s, shared32) / h;
        float v = 0.f;
#pragma unroll 4
        for (int i = threadIdx.x; i < h; i += blockDim.x) { float d = xr[i] - mean; v += d * d; }
        inv = 1.f / sqrtf(block_sum(v, shared32) / h + eps);
    } else {
        float s = 0.f;
#pragma unroll 4
        for (int i = threadIdx.x; i < h; i += blockDim.x) s += xr[i] * xr[i];
        inv = 1.f / sqrtf(block_sum(s, shared32) / h + eps);
    }
    // Whole warps walk the row so that a warp holds one block of 32 when the output is also quantized.
    int lane = threadIdx.x & 31;
    for (int base = threadIdx.x - lane; base < h; base += blockDim.x) {
        int i = base + lane;
        bool valid = i < h;
        float v = 0.f;
        if (valid) {
            v = kind == NORM_LAYER ? (xr[i] - mean) * inv * wr[i] + (b ? b[i] : 0.f)
              : xr[i] * inv * (kind == NORM_RMS_PLUS_ONE ? 1.f + wr[i] : wr[i]);
            yr[i] = v;
        }
        if (q) {
            int64_t blocksPerRow = (h + ACT_BLOCK - 1) / ACT_BLOCK;
            quantize_block32(v, valid, (int64_t)blockIdx.x * h + i, blockIdx.x * blocksPerRow + base / ACT_BLOCK, q, qd, qf);
        }
    }
}

// With q set (and h a multiple of 32 or not), also writes the quantized output as k_quantize does.
inline void launch_norm(const float* x, float* y, const float* w, const float* b, int rows, int h, int heads, int kind,
                        float eps, cudaStream_t stream, int8_t* q = nullptr, float* qd = nullptr, float* qf = nullptr)
{
    // Enough threads that each holds a few values: the row's passes are latency-bound, not bandwidth-bound.
    int threads = std::min(1024, std::max(32, (h / 4 + 31) / 32 * 32));
    launch(k_norm, rows, threads, 0, stream, x, y, w, b, h, heads, kind, eps, q, qd, qf);
}

// ---------------------------------------------------------------------------------------------
// Rotary embedding (rotate-half convention) on the first 2·half dims of every q and k head at positions *pos0 + t,
// then the token's keys and values appended to the cache. cos and sin come from a table of every position, made
// once per sequence: the angle is an f32 product as in transformers, its cos and sin taken in double.
// ---------------------------------------------------------------------------------------------

__global__ void k_rope_table(float* cosTable, float* sinTable, int positions, int half, const float* __restrict__ invFreq)
{
    grid_wait();
    int64_t count = (int64_t)positions * half;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < count; idx += (int64_t)gridDim.x * blockDim.x) {
        float angle = __fmul_rn((float)(idx / half), invFreq[idx % half]);
        cosTable[idx] = (float)cos((double)angle);
        sinTable[idx] = (float)sin((double)angle);
    }
}

inline void launch_rope_table(float* cosTable, float* sinTable, int positions, int half, const float* invFreq, cudaStream_t stream)
{
    launch(k_rope_table, grid_for((int64_t)positions * half, 256), 256, 0, stream, cosTable, sinTable, positions, half, invFreq);
}

// The KV cache holds f32 or binary16 (round-to-nearest-even, as the CPU's f16 cache): odllm_cuda_sequence_create's
// kv_type. Its kernels are templates on the element type; these helpers read it back as f32.
enum { KV_F32 = 0, KV_F16 = 1 };
inline size_t kv_element_bytes(int kvType) { return kvType == KV_F16 ? sizeof(__half) : sizeof(float); }

__device__ __forceinline__ void kv_store(float* p, float x) { *p = x; }
__device__ __forceinline__ void kv_store(__half* p, float x) { *p = __float2half_rn(x); }
__device__ __forceinline__ float kv_load(const float* p) { return *p; }
__device__ __forceinline__ float kv_load(const __half* p) { return __half2float(*p); }
// Four consecutive elements, 4-element aligned: one 16-byte load for f32, one 8-byte load for f16.
__device__ __forceinline__ float4 kv_load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 kv_load4(const __half* p)
{
    uint2 bits = *reinterpret_cast<const uint2*>(p);
    return make_float4(__half2float(__ushort_as_half((unsigned short)bits.x)), __half2float(__ushort_as_half((unsigned short)(bits.x >> 16))),
                       __half2float(__ushort_as_half((unsigned short)bits.y)), __half2float(__ushort_as_half((unsigned short)(bits.y >> 16))));
}

// Rotate-half RoPE of dims (i, i + half) by the angle with this cos and sin; the decode attention applies it too.
// Rounded after each product (no FMA contraction), as the CPU computes it, and alike wherever it is inlined.
__device__ __forceinline__ void rotate_pair(float& x1, float& x2, float c, float s)
{
    float a = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s)), b = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    x1 = a;
    x2 = b;
}

// Block t: rotates token t's q and k heads (half may be 0: ALiBi), then stores its k and v rows in the cache.
template <typename KV>
__global__ void k_rope_store(float* q, float* k, const float* __restrict__ v, KV* kc, KV* vc, int heads, int kvHeads,
                             int d, int half, const int32_t* pos0, const float* __restrict__ cosTable,
                             const float* __restrict__ sinTable)
{
    grid_wait();
    int t = blockIdx.x;
    int pos = *pos0 + t;
    const float* cs = cosTable + (int64_t)pos * half;
    const float* sn = sinTable + (int64_t)pos * half;
#pragma unroll 4
    for (int idx = threadIdx.x; idx < (heads + kvHeads) * half; idx += blockDim.x) {
        int head = idx / half, i = idx % half;
        float c = cs[i], s = sn[i];
        float* base = head < heads ? q + ((int64_t)t * heads + head) * d : k + ((int64_t)t * kvHeads + head - heads) * d;
        float x1 = base[i], x2 = base[i + half];
        rotate_pair(x1, x2, c, s);
        base[i] = x1;
        base[i + half] = x2;
    }
    __syncthreads();
    int kvDim = kvHeads * d;
    for (int i = threadIdx.x; i < kvDim; i += blockDim.x) {
        kv_store(kc + (int64_t)pos * kvDim + i, k[(int64_t)t * kvDim + i]);
        kv_store(vc + (int64_t)pos * kvDim + i, v[(int64_t)t * kvDim + i]);
    }
}

inline void launch_rope_store(float* q, float* k, const float* v, void* kc, void* vc, int kvType, int n, int heads, int kvHeads,
                              int d, int half, const int32_t* pos0, const float* cosTable, const float* sinTable, cudaStream_t stream)
{
    if (kvType == KV_F16)
        launch(k_rope_store<__half>, n, 512, 0, stream, q, k, v, static_cast<__half*>(kc), static_cast<__half*>(vc), heads, kvHeads,
               d, half, pos0, cosTable, sinTable);
    else
        launch(k_rope_store<float>, n, 512, 0, stream, q, k, v, static_cast<float*>(kc), static_cast<float*>(vc), heads, kvHeads,
               d, half, pos0, cosTable, sinTable);
}

// ---------------------------------------------------------------------------------------------
// Causal attention: block (t, head) for the query at position *pos0 + t over keys firstKey…pos, where a sliding
// layer sees pos − window < key ≤ pos. score = (q·k + slope·key) · scale, then cap·tanh(score/cap), softmax,
// weighted sum of values. Dynamic shared memory: d + (longest key count) floats.
// ---------------------------------------------------------------------------------------------

constexpr int ATTN_THREADS = 256;

template <typename KV>
__global__ void __launch_bounds__(ATTN_THREADS) k_attention(const float* __restrict__ q, const KV* __restrict__ kc,
                                                            const KV* __restrict__ vc, float* __restrict__ out,
                                                            int heads, int kvHeads, int d, const int32_t* pos0,
                                                            int window, float scale, float cap,
                                                            const float* __restrict__ slopes)
{
    grid_wait();
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
        const KV* kr = kc + (int64_t)key * kvDim + (int64_t)g * d;
        float dot = 0.f;
        for (int i = lane; i < d; i += 32) dot += qs[i] * kv_load(kr + i);
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
    const KV* vbase = vc + (int64_t)firstKey * kvDim + (int64_t)g * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float acc = 0.f;
        for (int j = 0; j < count; j++) acc += scores[j] * kv_load(vbase + (int64_t)j * kvDim + i);
        oh[i] = acc * inv;
    }
}

inline size_t attention_shared_bytes(int d, int maxKeys) { return (size_t)(d + maxKeys) * sizeof(float); }

// Raises both instantiations' dynamic shared memory limit (the caller clears a refusal with cudaGetLastError).
inline cudaError_t attention_set_shared(size_t bytes)
{
    cudaError_t e = cudaFuncSetAttribute(k_attention<float>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    cudaError_t h = cudaFuncSetAttribute(k_attention<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    return e != cudaSuccess ? e : h;
}

inline void launch_attention(const float* q, const void* kc, const void* vc, int kvType, float* out, int n, int heads,
                             int kvHeads, int d, const int32_t* pos0, int window, float scale, float cap, const float* slopes,
                             int maxKeys, cudaStream_t stream)
{
    dim3 grid(n, heads);
    size_t shared = attention_shared_bytes(d, maxKeys);
    if (kvType == KV_F16)
        launch(k_attention<__half>, grid, ATTN_THREADS, shared, stream, q, static_cast<const __half*>(kc),
               static_cast<const __half*>(vc), out, heads, kvHeads, d, pos0, window, scale, cap, slopes);
    else
        launch(k_attention<float>, grid, ATTN_THREADS, shared, stream, q, static_cast<const float*>(kc),
               static_cast<const float*>(vc), out, heads, kvHeads, d, pos0, window, scale, cap, slopes);
}

// Decode (one query) splits the key range across blocks so a long cache is read by many SMs at once, and one block
// serves every query head of a KV group, so each key and value row is read once: block (group, split) handles keys
// firstKey + split·ATTN_CHUNK … and writes, per head, its max score, its sum of exponentials and its unnormalized
// weighted values; k_attention_combine merges the splits. The split count is fixed by the capacity (a captured
// graph replays at every position); splits past the current position write empty parts. Every phase issues all
// of its loads before using them: a block is latency-bound, not bandwidth-bound, otherwise. Where they fit, the chunk's
// keys and values are copied into shared memory before grid_wait(), while the q/k/v product still runs (with the
// combine below: on an H100, Gemma-2B decode q4 771–796 → 862, q8 587–599 → 651–658 tok/s in one call; measured by
// leaving kernels out, split + combine had cost ~17 µs of each layer's ~90).
// The scores phase maps lanes to keys and the 8 warps to eighths of the head dims: ATTN_CHUNK is 32, the threads 256.
constexpr int ATTN_CHUNK = 32, ATTN_SPLIT_THREADS = 256, ATTN_HEADS_AT_ONCE = 8, ATTN_MAX_HEAD_DIM = 1024;

__device__ __forceinline__ float attention_score(float dot, float slope, int key, float scale, float cap)
{
    float score = __fmul_rn(__fadd_rn(dot, __fmul_rn(slope, (float)key)), scale);
    return cap > 0.f ? cap * tanhf(score / cap) : score;
}

// Decoding without a separate RoPE + store launch: the current token's unrotated k and v rows (k NULL: q is rotated
// and the cache holds them already), and the cos/sin tables of k_rope_store.
struct AttentionRope {
    const float *k, *v, *cos, *sin;
    int half;
};

// Per head h: partial + h·part_stride holds [splits] maxima, [splits] sums, then (16-byte aligned) [splits][d] values.
__host__ __device__ __forceinline__ int64_t part_values(int splits) { return (2 * splits + 3) & ~3; }
__host__ __device__ __forceinline__ int64_t part_stride(int splits, int d) { return part_values(splits) + (int64_t)splits * d; }

// Shared memory: q of the group's heads, their scores, and the value sums of the key groups before they are added.
__host__ __device__ __forceinline__ size_t attention_split_floats(int group, int d)
{
    return (size_t)group * d + (size_t)group * ATTN_CHUNK + (size_t)ATTN_SPLIT_THREADS * 4 * ATTN_HEADS_AT_ONCE;
}

template <typename KV>
__global__ void __launch_bounds__(ATTN_SPLIT_THREADS, 1) k_attention_split(const float* __restrict__ q, KV* kc, KV* vc,
    float* __restrict__ partial, int heads, int kvHeads, int d, const int32_t* pos0, int window, float scale, float cap,
    const float* __restrict__ slopes, AttentionRope rope, int staged)
{
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    int g = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
    int group = heads / kvHeads, h0 = g * group;
    float* qs = smem;                                  // [group][d]
    float* scores = qs + (int64_t)group * d;           // [group][ATTN_CHUNK]
    float4* sums = reinterpret_cast<float4*>(scores + (int64_t)group * ATTN_CHUNK);  // [key group][8 heads][d / 4]
    // staged: the chunk's keys and values [ATTN_CHUNK][d] each, after the floats.
    KV* ks = reinterpret_cast<KV*>(smem + attention_split_floats(group, d));
    KV* vs = ks + ATTN_CHUNK * d;
    // The position was written before the step began, and the cache rows before it by earlier steps, so the rows
    // before pos are copied before grid_wait(), while the previous kernel (the q/k/v product) still runs.
    int pos = *pos0;
    int firstKey = window > 0 ? max(0, pos - window + 1) : 0;
    int begin = firstKey + split * ATTN_CHUNK, end = min(pos + 1, begin + ATTN_CHUNK);
    int count = end - begin;
    int kvDim = kvHeads * d, pieces = d * (int)sizeof(KV) / 16;  // 16-byte pieces of a row
    auto stage_rows = [&](int from, int to) {
        for (int i = threadIdx.x; i < (to - from) * pieces; i += blockDim.x) {
            int j = from + i / pieces, p = i % pieces;
            int64_t at = (int64_t)(begin + j) * kvDim + (int64_t)g * d;
            cp_async16(reinterpret_cast<uint4*>(ks + (int64_t)j * d) + p, reinterpret_cast<const uint4*>(kc + at) + p);
            cp_async16(reinterpret_cast<uint4*>(vs + (int64_t)j * d) + p, reinterpret_cast<const uint4*>(vc + at) + p);
        }
        cp_async_commit();
    };
    if (staged && count > 0) stage_rows(0, min(count, pos - begin));
    grid_wait();
    // Without RoPE here, the previous kernel appended the current row.
    if (staged && !rope.k && count > 0 && end == pos + 1) stage_rows(count - 1, count);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (count <= 0) {
        for (int h = h0; h < h0 + group; h++) {
            float* pm = partial + h * part_stride(splits, d);
            if (threadIdx.x == 0) { pm[split] = -INFINITY; pm[splits + split] = 0.f; }
            for (int i = threadIdx.x; i < d; i += blockDim.x) pm[part_values(splits) + (int64_t)split * d + i] = 0.f;
        }
        return;
    }
    int d4 = d / 4;
    const float4* q4 = reinterpret_cast<const float4*>(q + (int64_t)h0 * d);
#pragma unroll 4
    for (int i = threadIdx.x; i < group * d4; i += blockDim.x) reinterpret_cast<float4*>(qs)[i] = q4[i];
    if (staged) cp_async_wait<0>();
    __syncthreads();
    if (rope.k) {
        // The current token's RoPE, as k_rope_store computes it: every block rotates its copy of q, and the block
        // whose keys end at pos appends the rotated key and the value to the cache before reading them back.
        const float* cs = rope.cos + (int64_t)pos * rope.half;
        const float* sn = rope.sin + (int64_t)pos * rope.half;
        for (int idx = threadIdx.x; idx < group * rope.half; idx += blockDim.x) {
            int hh = idx / rope.half, i = idx % rope.half;
            float* qh = qs + hh * d;
            rotate_pair(qh[i], qh[i + rope.half], cs[i], sn[i]);
        }
        if (end == pos + 1) {
            const float* kr = rope.k + (int64_t)g * d;
            const float* vr = rope.v + (int64_t)g * d;
            KV* kd = kc + (int64_t)pos * kvDim + (int64_t)g * d;
            KV* vd = vc + (int64_t)pos * kvDim + (int64_t)g * d;
            KV* kst = ks + (int64_t)(count - 1) * d;  // the row's copy in the stage
            KV* vst = vs + (int64_t)(count - 1) * d;
            for (int i = threadIdx.x; i < rope.half; i += blockDim.x) {
                float x1 = kr[i], x2 = kr[i + rope.half];
                rotate_pair(x1, x2, cs[i], sn[i]);
                kv_store(kd + i, x1);
                kv_store(kd + i + rope.half, x2);
                if (staged) { kv_store(kst + i, x1); kv_store(kst + i + rope.half, x2); }
            }
            for (int i = 2 * rope.half + threadIdx.x; i < d; i += blockDim.x) {
                kv_store(kd + i, kr[i]);
                if (staged) kv_store(kst + i, kr[i]);
            }
            for (int i = threadIdx.x; i < d; i += blockDim.x) {
                kv_store(vd + i, vr[i]);
                if (staged) kv_store(vst + i, vr[i]);
            }
        }
        __syncthreads();
    }

    // Scores: lane j takes key j of the chunk and warp w the w-th eighth of the head dims, so every load of a lane is
    // independent and no warp reduction is needed; the eight warps' partial dots meet in shared memory.
    {
        int slice = d / 8, from = warp * slice;
        int j = min(lane, count - 1);  // lanes past the end read a valid row; their scores are never used
        const KV* kr = (staged ? ks + (int64_t)j * d : kc + (int64_t)(begin + j) * kvDim + (int64_t)g * d) + from;
        for (int hb = 0; hb < group; hb += ATTN_HEADS_AT_ONCE) {
            float dots[ATTN_HEADS_AT_ONCE];
#pragma unroll
            for (int hh = 0; hh < ATTN_HEADS_AT_ONCE; hh++) dots[hh] = 0.f;
            if (slice % 4 == 0) {
                // f16: 4, not 8, iterations at once; at 8 ptxas keeps to ~80 registers and spills 20 bytes.
#pragma unroll (sizeof(KV) == sizeof(float) ? 8 : 4)
                for (int i = 0; i < slice; i += 4) {
                    float4 kv = kv_load4(kr + i);
#pragma unroll
                    for (int hh = 0; hh < ATTN_HEADS_AT_ONCE; hh++) {
                        if (hb + hh < group) {
                            float4 qv = *reinterpret_cast<const float4*>(qs + (hb + hh) * d + from + i);
                            dots[hh] += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
                        }
                    }
                }
            } else {
#pragma unroll 8
                for (int i = 0; i < slice; i++) {
                    float kv = kv_load(kr + i);
#pragma unroll
                    for (int hh = 0; hh < ATTN_HEADS_AT_ONCE; hh++)
                        if (hb + hh < group) dots[hh] += qs[(hb + hh) * d + from + i] * kv;
                }
            }
            float* red = reinterpret_cast<float*>(sums);  // [warp][8 heads][32 keys]
#pragma unroll
            for (int hh = 0; hh < ATTN_HEADS_AT_ONCE; hh++) red[(warp * ATTN_HEADS_AT_ONCE + hh) * 32 + lane] = dots[hh];
            __syncthreads();
            // Thread (head, key) adds the eight slices in order.
            int hh = threadIdx.x / 32, key = threadIdx.x % 32;
            if (hb + hh < group && key < count) {
                float dot = 0.f;
#pragma unroll
                for (int w = 0; w < 8; w++) dot += red[(w * ATTN_HEADS_AT_ONCE + hh) * 32 + key];
                scores[(hb + hh) * ATTN_CHUNK + key] = attention_score(dot, slopes ? slopes[h0 + hb + hh] : 0.f, begin + key, scale, cap);
            }
            __syncthreads();
        }
    }
    // Softmax pieces: a warp per head.
    for (int hh = warp; hh < group; hh += blockDim.x >> 5) {
        float* sc = scores + hh * ATTN_CHUNK;
        float m = -INFINITY;
        for (int j = lane; j < count; j += 32) m = fmaxf(m, sc[j]);
        m = warp_max(m);
        float sum = 0.f;
        for (int j = lane; j < count; j += 32) { float e = expf(sc[j] - m); sc[j] = e; sum += e; }
        sum = warp_sum(sum);
        if (lane == 0) {
            float* pm = partial + (h0 + hh) * part_stride(splits, d);
            pm[split] = m;
            pm[splits + split] = sum;
        }
    }
    __syncthreads();
    // Values: thread t takes the 4-float column t mod d/4 of the keys kg, kg + groups, … (kg = t div d/4), for 8
    // heads at once; the key groups' sums meet in shared memory.
    int keyGroups = blockDim.x / d4, col = threadIdx.x % d4, kg = threadIdx.x / d4;
    const KV* vbase = (staged ? vs : vc + (int64_t)begin * kvDim + (int64_t)g * d) + 4 * col;
    int64_t vstride = staged ? d : kvDim;
    for (int hb = 0; hb < group; hb += ATTN_HEADS_AT_ONCE) {
        float4 acc[ATTN_HEADS_AT_ONCE];
#pragma unroll
        for (int hh = 0; hh < ATTN_HEADS_AT_ONCE; hh++) acc[hh] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (kg < keyGroups) {
#pragma unroll 8
            for (int j = kg; j < count; j += keyGroups) {
                float4 v = kv_load4(vbase + (int64_t)j * vstride);
#pragma unroll
                for (int hh = 0; hh < ATTN_HEADS_AT_ONCE; hh++) {
                    if (hb + hh < group) {
                        float e = scores[(hb + hh) * ATTN_CHUNK + j];
                        acc[hh].x += e * v.x; acc[hh].y += e * v.y; acc[hh].z += e * v.z; acc[hh].w += e * v.w;
                    }
                }
            }
#pragma unroll
            for (int hh = 0; hh < ATTN_HEADS_AT_ONCE; hh++) sums[((int64_t)kg * ATTN_HEADS_AT_ONCE + hh) * d4 + col] = acc[hh];
        }
        __syncthreads();
        for (int item = threadIdx.x; item < ATTN_HEADS_AT_ONCE * d4; item += blockDim.x) {
            int hh = item / d4, c = item % d4;
            if (hb + hh >= group) continue;
            float4 total = make_float4(0.f, 0.f, 0.f, 0.f);
            for (int k2 = 0; k2 < keyGroups; k2++) {
                float4 p = sums[((int64_t)k2 * ATTN_HEADS_AT_ONCE + hh) * d4 + c];
                total.x += p.x; total.y += p.y; total.z += p.z; total.w += p.w;
            }
            float* pv = partial + (h0 + hb + hh) * part_stride(splits, d) + part_values(splits) + (int64_t)split * d + 4 * c;
            *reinterpret_cast<float4*>(pv) = total;
        }
        __syncthreads();
    }
}

// Block (head, 32 dims): lane i takes dim i of the slice and warp w the splits w, w + 8, …, merged online (a running
// max and rescaled sums), so every load is independent of the others; the eight warps meet in shared memory. One
// global-load latency and one barrier: the combine cost ~8 µs per layer on an H100 with a block per head looping over
// the splits. With q set (d a multiple of 32: the slice is one block of 32), also writes the output quantized as
// k_quantize would (qf may be NULL).
constexpr int ATTN_COMBINE_WARPS = 8;

__global__ void __launch_bounds__(ATTN_COMBINE_WARPS * 32) k_attention_combine(const float* __restrict__ partial, float* __restrict__ out,
                                                                              int d, int splits, int8_t* q, float* qd, float* qf)
{
    grid_wait();
    __shared__ float maxima[ATTN_COMBINE_WARPS], totals[ATTN_COMBINE_WARPS], sums[ATTN_COMBINE_WARPS][32];
    int hd = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int dim = blockIdx.y * 32 + lane;
    bool valid = dim < d;
    const float* pmax = partial + hd * part_stride(splits, d);
    const float* psum = pmax + splits;
    const float* pval = pmax + part_values(splits) + (valid ? dim : 0);
    float m = -INFINITY, total = 0.f, acc = 0.f;
#pragma unroll 4
    for (int s = warp; s < splits; s += ATTN_COMBINE_WARPS) {
        float sm = pmax[s], ss = psum[s], sv = pval[(int64_t)s * d];
        if (sm == -INFINITY) continue;  // an empty split
        float mn = fmaxf(m, sm), old = expf(m - mn), w = expf(sm - mn);
        total = total * old + ss * w;
        acc = acc * old + sv * w;
        m = mn;
    }
    if (lane == 0) { maxima[warp] = m; totals[warp] = total; }
    sums[warp][lane] = acc;
    __syncthreads();
    if (warp != 0) return;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < ATTN_COMBINE_WARPS; w++) mx = fmaxf(mx, maxima[w]);
    float t = 0.f, v = 0.f;
#pragma unroll
    for (int w = 0; w < ATTN_COMBINE_WARPS; w++) {
        float f = maxima[w] == -INFINITY ? 0.f : expf(maxima[w] - mx);
        t += totals[w] * f;
        v += sums[w][lane] * f;
    }
    float o = v * (1.f / t);
    int64_t e = (int64_t)hd * d + dim;
    if (valid) out[e] = o;
    if (q) quantize_block32(o, valid, e, e / ACT_BLOCK, q, qd, qf);
}

inline int attention_splits(int maxKeys) { return (maxKeys + ATTN_CHUNK - 1) / ATTN_CHUNK; }
inline size_t attention_partial_floats(int heads, int d, int maxKeys) { return (size_t)heads * part_stride(attention_splits(maxKeys), d); }
// Whether the split kernel copies its keys and values into shared memory before it waits for the previous kernel
// (cp.async of 16-byte pieces): where they fit in 96 KB, under the 99 KB per block of sm_86/sm_89, the smallest limit of
// the supported architectures, with the margin sequence creation keeps.
inline bool attention_split_staged(int group, int d, int kvType)
{
    return (d * kv_element_bytes(kvType)) % 16 == 0 &&
           attention_split_floats(group, d) * sizeof(float) + 2 * ATTN_CHUNK * d * kv_element_bytes(kvType) <= 96 * 1024;
}
inline size_t attention_split_shared_bytes(int heads, int kvHeads, int d, int kvType)
{
    int group = heads / kvHeads;
    size_t stage = attention_split_staged(group, d, kvType) ? 2 * ATTN_CHUNK * d * kv_element_bytes(kvType) : 0;
    return attention_split_floats(group, d) * sizeof(float) + stage;
}

inline cudaError_t attention_split_set_shared(size_t bytes)
{
    cudaError_t e = cudaFuncSetAttribute(k_attention_split<float>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    cudaError_t h = cudaFuncSetAttribute(k_attention_split<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    return e != cudaSuccess ? e : h;
}

// With outq set, also writes the output quantized (outf may be NULL) when d is a multiple of 32; returns whether it did.
// With rope.k set, q is the unrotated query and the kernel applies RoPE and appends the token's key and value itself.
inline bool launch_attention_decode(const float* q, void* kc, void* vc, int kvType, float* out, float* partial,
                                    int heads, int kvHeads, int d, const int32_t* pos0, int window, float scale, float cap,
                                    const float* slopes, int maxKeys, cudaStream_t stream, int8_t* outq = nullptr,
                                    float* outd = nullptr, float* outf = nullptr, AttentionRope rope = {})
{
    int splits = attention_splits(maxKeys);
    dim3 grid(kvHeads, splits);
    size_t shared = attention_split_shared_bytes(heads, kvHeads, d, kvType);
    int staged = attention_split_staged(heads / kvHeads, d, kvType);
    if (kvType == KV_F16)
        launch(k_attention_split<__half>, grid, ATTN_SPLIT_THREADS, shared, stream, q, static_cast<__half*>(kc),
               static_cast<__half*>(vc), partial, heads, kvHeads, d, pos0, window, scale, cap, slopes, rope, staged);
    else
        launch(k_attention_split<float>, grid, ATTN_SPLIT_THREADS, shared, stream, q, static_cast<float*>(kc),
               static_cast<float*>(vc), partial, heads, kvHeads, d, pos0, window, scale, cap, slopes, rope, staged);
    if (d % ACT_BLOCK != 0) outq = nullptr;
    launch(k_attention_combine, dim3(heads, (d + 31) / 32), ATTN_COMBINE_WARPS * 32, 0, stream, partial, out, d, splits, outq, outd, outf);
    return outq != nullptr;
}

// ---------------------------------------------------------------------------------------------
// Element-wise: activation (gated: up · act(gate)), residual add, soft-capping.
// ---------------------------------------------------------------------------------------------


__global__ void k_activate(float* up, const float* __restrict__ gate, int64_t count, int activation)
{
    grid_wait();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        up[i] = gate ? up[i] * activate(activation, gate[i]) : activate(activation, up[i]);
}

inline void launch_activate(float* up, const float* gate, int64_t count, int activation, cudaStream_t stream)
{
    launch(k_activate, grid_for(count, 256), 256, 0, stream, up, gate, count, activation);
}

__global__ void k_add(const float* a, const float* b, float* out, int64_t count)
{
    grid_wait();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}

inline void launch_add(const float* a, const float* b, float* out, int64_t count, cudaStream_t stream)
{
    launch(k_add, grid_for(count, 256), 256, 0, stream, a, b, out, count);
}

__global__ void k_softcap(float* x, int64_t count, float cap)
{
    grid_wait();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = cap * tanhf(x[i] / cap);
}

inline void launch_softcap(float* x, int64_t count, float cap, cudaStream_t stream)
{
    launch(k_softcap, grid_for(count, 256), 256, 0, stream, x, count, cap);
}

} // namespace odllm_cuda
