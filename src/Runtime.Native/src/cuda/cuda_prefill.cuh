// Tensor-core kernels of the prompt (prefill) pass: the integer-type matrix product over int8 activations and a
// flash-attention kernel. Internal, like cuda_kernels.cuh: included by odllm_cuda.cu and tests/test_cuda.cu.
#pragma once

#include "cuda_kernels.cuh"

namespace odllm_cuda {

// ---------------------------------------------------------------------------------------------
// Integer-type products (int8, q8_0, q4_0) for more than 8 input rows: int8 tensor cores (mma.sync m16n8k32, one
// instruction per block of 32) over the quantized activations, so each block's Σ q_w·q_x is exact as in the CPU
// kernels' contract, then scaled by (weight scale · activation scale) into f32. A 128×128 output tile per 256
// threads (2×4 warps of 64×32); each stage covers 4 blocks of 32 along k. The next stage is copied into the other of
// two shared-memory buffers with cp.async while the current one is multiplied, as stored: q4_0 nibbles become int8 as
// the MMA operands are loaded, so no staging registers are needed (on an H100, Gemma-2B prefill q4 30 270 → 31 400,
// q8 30 370 → 31 540 tok/s against register staging; capped at 128 registers for two blocks per SM it spills and
// measured 29 100 / 27 340). The per-block scaling runs
// on the CUDA cores, so it avoids the int→float conversion instruction (a quarter-rate unit): a block sum
// (|s| < 2^22) becomes a float by one integer add and one float subtraction.
//
// One launch covers up to three matrices sharing the input (q, k and v: each matrix gets its own column tiles),
// and the step after the product is fused in as in the decode GEMV: bias, residual add, activation, or the gate
// (GEMV_GATED: a tile holds 64 gate rows and the same 64 up rows, so a thread has both of an output's products).
// ---------------------------------------------------------------------------------------------

constexpr int MM_BM = 128, MM_BN = 128, MM_THREADS = 256, MM_STAGE = 4, MM_ROW = MM_STAGE * 32 + 16, MM_BUFFERS = 2;

struct MmaArgs {
    GemvMatrix m[3];    // GATED: m[0] gate, m[1] up, output in m[1].y
    int count;
    int rows;           // input rows (tokens)
    int k, mode, activation;
    const int8_t* xq;   // [rows][k] int8 activations and their block scales [rows][k / 32]
    const float* xd;
    const float* resid; // RESIDUAL: y = resid + (dot + bias); may equal y
};

__device__ __forceinline__ void mma_s8(int (&c)[4], const int (&a)[4], int b0, int b1)
{
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(0), "r"(0), "r"(0), "r"(0));
}

// Exact for −2^22 ≤ v < 2^22: the bits of 1.5·2^23 plus v are the float 1.5·2^23 + v.
__device__ __forceinline__ float small_int_to_float(int v) { return __int_as_float(v + 0x4B400000) - 12582912.f; }

// Signed 4-bit values q − 8 of the low nibbles of the four bytes of p, as four int8: (q | 0x80) − 8 cannot borrow
// across bytes, and flipping bit 7 back gives q − 8 in two's complement.
__device__ __forceinline__ uint32_t nibbles_minus_8(uint32_t p)
{
    return (((p & 0x0F0F0F0Fu) | 0x80808080u) - 0x08080808u) ^ 0x80808080u;
}

// cp.async of 16 or 4 bytes that writes zeros instead where `valid` is false (global must still be a valid address).
__device__ __forceinline__ void cp_async16_or_zero(void* shared, const void* global, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"((uint32_t)__cvta_generic_to_shared(shared)), "l"(global),
                 "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async4_or_zero(void* shared, const void* global, bool valid)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"((uint32_t)__cvta_generic_to_shared(shared)), "l"(global),
                 "r"(valid ? 4 : 0));
}

// One stage's shared memory: activations [MM_BM][MM_ROW], weight quants [MM_BN][WROW] (q4_0: the nibbles as stored),
// activation scales [MM_BM][MM_STAGE] f32, weight block scales [MM_BN][MM_STAGE] f16. Rows are padded by 16 bytes,
// which makes the fragment loads conflict-free.
template <int T> struct MmaStage {
    static constexpr int WROW = T == TYPE_Q4_0 ? MM_STAGE * 16 + 16 : MM_ROW;
    static constexpr int B = MM_BM * MM_ROW, AD = B + MM_BN * WROW, BD = AD + MM_BM * MM_STAGE * 4;
    static constexpr int BYTES = BD + MM_BN * MM_STAGE * 2;
};

__host__ __device__ __forceinline__ int mma_column_tiles(int rows, int mode) { return mode == GEMV_GATED ? (rows + MM_BN / 2 - 1) / (MM_BN / 2) : (rows + MM_BN - 1) / MM_BN; }

template <int T>
__global__ void __launch_bounds__(MM_THREADS, 1) k_matmul_mma(MmaArgs a)
{
    using S = MmaStage<T>;
    extern __shared__ uint4 mm_smem4[];
    uint8_t* mm_smem = reinterpret_cast<uint8_t*>(mm_smem4);
    grid_wait();
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, group = lane >> 2, quad = lane & 3;
    int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
    bool gated = a.mode == GEMV_GATED;
    // Column tile → matrix: every matrix has its own tiles, so a tile never straddles two.
    int tile = blockIdx.y, mi = 0;
    while (!gated && mi + 1 < a.count && tile >= mma_column_tiles(a.m[mi].rows, a.mode)) tile -= mma_column_tiles(a.m[mi++].rows, a.mode);
    int col0 = tile * (gated ? MM_BN / 2 : MM_BN);
    int m0 = blockIdx.x * MM_BM, m = a.rows, k = a.k, blocks = k / 32;
    constexpr int quantBytes = T == TYPE_Q4_0 ? 16 : 32;  // int8 rows are blocks of 32 values too

    // Row r of the weight tile (GATED: 16 gate rows, then the same 16 up rows, in every 32): its matrix and row.
    auto weight_row = [&](int r, int& mat, int& row) {
        if (gated) {
            int jj = r & 31;
            mat = jj < 16 ? 0 : 1;
            row = col0 + (r >> 5) * 16 + (jj & 15);
        } else {
            mat = mi;
            row = col0 + r;
        }
    };
    // Copies stage b0's activations, their scales and the weight quants into buffer buf.
    auto copy_stage = [&](int buf, int b0) {
        uint8_t* base = mm_smem + buf * S::BYTES;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int item = tid + i * MM_THREADS, r = item >> 3, part = item & 7, b = b0 + (part >> 1);
            bool valid = m0 + r < m && b < blocks;
            cp_async16_or_zero(base + r * MM_ROW + part * 16, valid ? a.xq + (int64_t)(m0 + r) * k + b * 32 + (part & 1) * 16 : a.xq, valid);
        }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            int item = tid + i * MM_THREADS, r = item >> 2, b = b0 + (item & 3);
            bool valid = m0 + r < m && b < blocks;
            cp_async4_or_zero(base + S::AD + item * 4, valid ? a.xd + (int64_t)(m0 + r) * blocks + b : a.xd, valid);
        }
        constexpr int perRow = MM_STAGE * quantBytes / 16;  // vectors of a weight row in a stage
#pragma unroll
        for (int i = 0; i < MM_BN * perRow / MM_THREADS; i++) {
            int item = tid + i * MM_THREADS, r = item / perRow, part = item % perRow, b = b0 + part * 16 / quantBytes;
            int mat, row;
            weight_row(r, mat, row);
            bool valid = row < a.m[mat].rows && b < blocks;
            const uint8_t* w = a.m[mat].w;
            cp_async16_or_zero(base + S::B + r * S::WROW + part * 16,
                               valid ? w + ((int64_t)row * blocks + b) * quantBytes + (part * 16) % quantBytes : w, valid);
        }
    };
    // The weight block scales of stage b0 (f16; int8 has one per row, applied in the epilogue) go through registers:
    // 8 bytes per row are not always aligned for cp.async.
    unsigned short scaleBits[2];
    auto load_scales = [&](int b0) {
        if constexpr (T != TYPE_INT8) {
#pragma unroll
            for (int i = 0; i < 2; i++) {
                int item = tid + i * MM_THREADS, r = item >> 2, b = b0 + (item & 3);
                int mat, row;
                weight_row(r, mat, row);
                bool valid = row < a.m[mat].rows && b < blocks;
                scaleBits[i] = valid ? __ldg(reinterpret_cast<const unsigned short*>(block_scales<T>(a.m[mat].w, a.m[mat].rows, blocks)) +
                                             (int64_t)row * blocks + b)
                                     : (unsigned short)0;
            }
        }
    };
    auto store_scales = [&](int buf) {
        if constexpr (T != TYPE_INT8) {
#pragma unroll
            for (int i = 0; i < 2; i++)
                reinterpret_cast<unsigned short*>(mm_smem + buf * S::BYTES + S::BD)[tid + i * MM_THREADS] = scaleBits[i];
        }
    };

    float acc[4][4][4];
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mt][nt][e] = 0.f;

    // MM_BUFFERS buffers: stages s + 1 … s + MM_BUFFERS − 1 are in flight while stage s is multiplied (three measured
    // slower than two on an H100: q8 prefill 31 340 vs 32 000 tok/s).
    constexpr int NB = MM_BUFFERS;
    int stages = (blocks + MM_STAGE - 1) / MM_STAGE;
#pragma unroll
    for (int p = 0; p < NB - 1; p++) {
        if (p < stages) {
            copy_stage(p, p * MM_STAGE);
            load_scales(p * MM_STAGE);
            store_scales(p);
        }
        cp_async_commit();
    }
    for (int s = 0; s < stages; s++) {
        int buf = s % NB, next = (s + NB - 1) % NB;
        if (s + NB - 1 < stages) {
            copy_stage(next, (s + NB - 1) * MM_STAGE);
            load_scales((s + NB - 1) * MM_STAGE);
        }
        cp_async_commit();
        cp_async_wait<NB - 1>();  // this stage's copies have landed
        __syncthreads();
        const uint8_t* base = mm_smem + buf * S::BYTES;
        const float* ads = reinterpret_cast<const float*>(base + S::AD);
        const __half* bds = reinterpret_cast<const __half*>(base + S::BD);
#pragma unroll 1
        for (int j = 0; j < MM_STAGE; j++) {
            int af[4][4];
            float xd0[4], xd1[4];
#pragma unroll
            for (int mt = 0; mt < 4; mt++) {
                int r = wm + mt * 16 + group;
                const uint8_t* row0 = base + r * MM_ROW + j * 32 + quad * 4;
                const uint8_t* row8 = row0 + 8 * MM_ROW;
                af[mt][0] = *reinterpret_cast<const int*>(row0);
                af[mt][1] = *reinterpret_cast<const int*>(row8);
                af[mt][2] = *reinterpret_cast<const int*>(row0 + 16);
                af[mt][3] = *reinterpret_cast<const int*>(row8 + 16);
                xd0[mt] = ads[r * MM_STAGE + j];
                xd1[mt] = ads[(r + 8) * MM_STAGE + j];
            }
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                int c = wn + nt * 8 + group;
                int b0, b1;
                if constexpr (T == TYPE_Q4_0) {
                    // Byte i of a block holds element i (low nibble) and element i + 16 (high): one word gives both fragments.
                    uint32_t word = *reinterpret_cast<const uint32_t*>(base + S::B + c * S::WROW + j * 16 + quad * 4);
                    b0 = (int)nibbles_minus_8(word);
                    b1 = (int)nibbles_minus_8(word >> 4);
                } else {
                    const uint8_t* wr = base + S::B + c * S::WROW + j * 32 + quad * 4;
                    b0 = *reinterpret_cast<const int*>(wr);
                    b1 = *reinterpret_cast<const int*>(wr + 16);
                }
                int cs0 = wn + nt * 8 + quad * 2;
                float wd0 = T == TYPE_INT8 ? 1.f : __half2float(bds[cs0 * MM_STAGE + j]);
                float wd1 = T == TYPE_INT8 ? 1.f : __half2float(bds[(cs0 + 1) * MM_STAGE + j]);
#pragma unroll
                for (int mt = 0; mt < 4; mt++) {
                    int cs[4];
                    mma_s8(cs, af[mt], b0, b1);
                    acc[mt][nt][0] = fmaf(small_int_to_float(cs[0]), wd0 * xd0[mt], acc[mt][nt][0]);
                    acc[mt][nt][1] = fmaf(small_int_to_float(cs[1]), wd1 * xd0[mt], acc[mt][nt][1]);
                    acc[mt][nt][2] = fmaf(small_int_to_float(cs[2]), wd0 * xd1[mt], acc[mt][nt][2]);
                    acc[mt][nt][3] = fmaf(small_int_to_float(cs[3]), wd1 * xd1[mt], acc[mt][nt][3]);
                }
            }
        }
        __syncthreads();  // the buffer is refilled by the next iteration's copies
        if (s + NB - 1 < stages) store_scales(next);
    }

    // Epilogue: thread value (mt, nt, e) is output row m0 + wm + mt·16 + group (+8 for e ≥ 2), tile column
    // wn + nt·8 + 2·quad + (e & 1).
    const GemvMatrix& out = a.m[gated ? 1 : mi];
    int n = out.rows;
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int r = m0 + wm + mt * 16 + group + (e >= 2 ? 8 : 0);
            if (r >= m) continue;
            if (gated) {
#pragma unroll
                for (int nt = 0; nt < 2; nt++) {
                    int f = col0 + (warp & 3) * 16 + nt * 8 + quad * 2 + (e & 1);
                    if (f >= n) continue;
                    float g = acc[mt][nt][e], u = acc[mt][nt + 2][e];
                    if constexpr (T == TYPE_INT8) {
                        g *= __ldg(reinterpret_cast<const float*>(a.m[0].w + (int64_t)n * k) + f);
                        u *= __ldg(reinterpret_cast<const float*>(out.w + (int64_t)n * k) + f);
                    }
                    out.y[(int64_t)r * n + f] = (u + (out.bias ? out.bias[f] : 0.f)) * activate(a.activation, g);
                }
            } else {
#pragma unroll
                for (int nt = 0; nt < 4; nt++) {
                    int c = col0 + wn + nt * 8 + quad * 2 + (e & 1);
                    if (c >= n) continue;
                    float v = acc[mt][nt][e];
                    if constexpr (T == TYPE_INT8) v *= __ldg(reinterpret_cast<const float*>(out.w + (int64_t)n * k) + c);
                    v += out.bias ? out.bias[c] : 0.f;
                    if (a.mode == GEMV_ACTIVATE) v = activate(a.activation, v);
                    else if (a.mode == GEMV_RESIDUAL) v += a.resid[(int64_t)r * n + c];
                    out.y[(int64_t)r * n + c] = v;
                }
            }
        }
}

// The tensor-core path: an integer weight type with more than 8 input rows and whole blocks of 32.
inline bool matmul_uses_mma(int type, int m, int k) { return m > 8 && k % 32 == 0 && quantizes_activations(type); }

// The stage buffers (≤ 78 KB): more than the 48 KB a launch gets without asking, less than the 99 KB per block of
// sm_86/sm_89, the smallest of the supported architectures.
template <int T> constexpr int matmul_mma_shared_bytes() { return MM_BUFFERS * MmaStage<T>::BYTES; }
static_assert(matmul_mma_shared_bytes<TYPE_Q8_0>() <= 99 * 1024, "fits a block on every supported architecture");

// Raises the tensor-core products' shared memory limit on the current device; before their first launch there.
inline cudaError_t matmul_mma_prepare()
{
    cudaError_t e = cudaFuncSetAttribute(k_matmul_mma<TYPE_INT8>, cudaFuncAttributeMaxDynamicSharedMemorySize, matmul_mma_shared_bytes<TYPE_INT8>());
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(k_matmul_mma<TYPE_Q8_0>, cudaFuncAttributeMaxDynamicSharedMemorySize, matmul_mma_shared_bytes<TYPE_Q8_0>());
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(k_matmul_mma<TYPE_Q4_0>, cudaFuncAttributeMaxDynamicSharedMemorySize, matmul_mma_shared_bytes<TYPE_Q4_0>());
    return e;
}

template <int T>
inline void launch_matmul_mma_typed(const MmaArgs& a, dim3 grid, cudaStream_t stream)
{
    launch(k_matmul_mma<T>, grid, MM_THREADS, matmul_mma_shared_bytes<T>(), stream, a);
}

// GATED needs m[0] and m[1] of one row count; RESIDUAL writes y = resid + product.
inline void launch_matmul_mma(const MmaArgs& a, int type, cudaStream_t stream)
{
    int tiles = 0;
    if (a.mode == GEMV_GATED) tiles = mma_column_tiles(a.m[1].rows, a.mode);
    else for (int i = 0; i < a.count; i++) tiles += mma_column_tiles(a.m[i].rows, a.mode);
    // The row tiles of one column tile run one after another, so the weight tile is read from memory about once and
    // the input (a few MB) stays in L2: measured on an H100, Gemma-2B prefill q8 27 766 → 30 574 tok/s, q4 29 997 →
    // 30 606 (column tiles first before).
    dim3 grid((a.rows + MM_BM - 1) / MM_BM, tiles);
    if (type == TYPE_INT8) launch_matmul_mma_typed<TYPE_INT8>(a, grid, stream);
    else if (type == TYPE_Q8_0) launch_matmul_mma_typed<TYPE_Q8_0>(a, grid, stream);
    else launch_matmul_mma_typed<TYPE_Q4_0>(a, grid, stream);
}

// One matrix, y = x·Wᵀ + bias.
inline void launch_matmul_mma(const int8_t* xq, const float* xd, int m, int k, const uint8_t* w, int type, int n,
                              const float* bias, float* y, cudaStream_t stream)
{
    MmaArgs a{};
    a.m[0] = GemvMatrix{w, bias, y, n};
    a.count = 1;
    a.rows = m;
    a.k = k;
    a.mode = GEMV_PLAIN;
    a.xq = xq;
    a.xd = xd;
    launch_matmul_mma(a, type, stream);
}

// ---------------------------------------------------------------------------------------------
// Prefill attention on tensor cores (flash attention): block (64 queries, head) walks the keys in tiles of 32 with
// an online softmax, Q·Kᵀ and P·V as mma.sync m16n8k16 with f32 accumulators. Each f32 operand is split into two
// f16 halves (x ≈ hi + lo) and every product takes three MMAs (hi·hi + lo·hi + hi·lo), which keeps about 21 bits
// of each operand: the results stay within a few 1e-6 of the f32 kernel, so every model and fixture can use it.
// Scores as k_attention: (q·k + slope·key)·scale, then cap·tanh(score/cap), causal with the sliding window.
// Head dims are padded with zeros to 32, 64, 128 or 256. The next key and value tile is copied from the cache into a
// staging area (cp.async) while the current one is multiplied, then converted to the f16 halves. An f16 cache holds
// the hi halves already and its lo halves are zero: the tile is copied as is and the products with lo K/V are skipped.
// ---------------------------------------------------------------------------------------------

constexpr int FA_BM = 64, FA_BN = 32, FA_THREADS = 128;
static_assert(FA_BM == 2 * FA_BN, "the q tile loads twice the items of a key tile");

__device__ __forceinline__ void mma_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t half2_bits(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }

__device__ __forceinline__ void cp_async8(void* shared, const void* global)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"((uint32_t)__cvta_generic_to_shared(shared)), "l"(global));
}
// Four consecutive cache elements.
__device__ __forceinline__ void cp_async_kv4(float* shared, const float* global) { cp_async16(shared, global); }
__device__ __forceinline__ void cp_async_kv4(__half* shared, const __half* global) { cp_async8(shared, global); }

// (x, y) → hi = f16(x, y) and lo = f16(x − hi.x, y − hi.y), x in the low half.
__device__ __forceinline__ void split_half2(float x, float y, uint32_t& hi, uint32_t& lo)
{
    __half2 h = __floats2half2_rn(x, y);
    float2 back = __half22float2(h);
    hi = half2_bits(h);
    lo = half2_bits(__floats2half2_rn(x - back.x, y - back.y));
}

template <int D, typename KV>
struct FlashLayout {
    static constexpr int QS = D + 8;        // row stride (halves) of the q and k tiles: conflict-free fragment loads
    static constexpr int VS = FA_BN + 8;    // row stride of the transposed value tile
    static constexpr int SS = D + 4;        // row stride (elements) of the staged cache tiles: conflict-free either way (f32)
    static constexpr int q = 0, k = 2 * FA_BM * QS, v = k + 2 * FA_BN * QS, halves = v + 2 * D * VS;
    static constexpr size_t bytes = (size_t)halves * sizeof(__half) + (size_t)2 * FA_BN * SS * sizeof(KV);
};

template <int D, typename KV>
__global__ void __launch_bounds__(FA_THREADS) k_flash_attention(const float* __restrict__ q, const KV* __restrict__ kc,
    const KV* __restrict__ vc, float* __restrict__ out, int n, int heads, int kvHeads, int d, const int32_t* pos0,
    int window, float scale, float cap, const float* __restrict__ slopes)
{
    grid_wait();
    using L = FlashLayout<D, KV>;
    constexpr bool HALF_KV = sizeof(KV) == sizeof(__half);
    constexpr int QS = L::QS, VS = L::VS, SS = L::SS;
    constexpr int FA_TILE_ITEMS = FA_BN * (D / 4) / FA_THREADS;  // float4 loads per thread for a key or value tile (q: twice)
    constexpr int batch = FA_TILE_ITEMS < 8 ? FA_TILE_ITEMS : 8;
    extern __shared__ float4 fa_smem4[];
    __half* qh = reinterpret_cast<__half*>(fa_smem4) + L::q;  // [hi | lo][FA_BM][QS]
    __half* kh = reinterpret_cast<__half*>(fa_smem4) + L::k;  // [hi | lo][FA_BN][QS]
    __half* vh = reinterpret_cast<__half*>(fa_smem4) + L::v;  // [hi | lo][D][VS]: dims by keys
    __half* ql = qh + FA_BM * QS;
    __half* kl = kh + FA_BN * QS;
    __half* vl = vh + D * VS;
    KV* stage = reinterpret_cast<KV*>(reinterpret_cast<__half*>(fa_smem4) + L::halves);  // [k | v][FA_BN][SS]
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, group = lane >> 2, quad = lane & 3;
    // The longest query tiles first: causal blocks differ in work by the key count.
    int t0 = (gridDim.x - 1 - blockIdx.x) * FA_BM, hd = blockIdx.y;
    int g = hd / (heads / kvHeads);
    int kvDim = kvHeads * d;
    int p0 = *pos0;
    int rows = min(FA_BM, n - t0);
    int lastPos = p0 + t0 + rows - 1;
    int firstKey = window > 0 ? max(0, p0 + t0 - window + 1) : 0;

    // Copies keys kb…kb+31 and their values into the staging area; rows past lastPos and dims past d are left out.
    auto stage_tile = [&](int kb) {
#pragma unroll 4
        for (int i = 0; i < FA_TILE_ITEMS; i++) {
            int item = tid + i * FA_THREADS, j = item / (D / 4), dim = (item % (D / 4)) * 4, key = kb + j;
            if (key <= lastPos && dim < d) {
                int64_t at = (int64_t)key * kvDim + (int64_t)g * d + dim;
                cp_async_kv4(stage + j * SS + dim, kc + at);
                cp_async_kv4(stage + (FA_BN + j) * SS + dim, vc + at);
            }
        }
        cp_async_commit();
    };
    stage_tile(firstKey);

    // Q tile, split, zero past the rows and the head dim.
#pragma unroll 1
    for (int i0 = 0; i0 < 2 * FA_TILE_ITEMS; i0 += batch) {
        float4 v[batch];
#pragma unroll
        for (int i = 0; i < batch; i++) {
            int item = tid + (i0 + i) * FA_THREADS, r = item / (D / 4), dim = (item % (D / 4)) * 4;
            v[i] = make_float4(0.f, 0.f, 0.f, 0.f);
            if (r < rows && dim < d) v[i] = *reinterpret_cast<const float4*>(q + ((int64_t)(t0 + r) * heads + hd) * d + dim);
        }
#pragma unroll
        for (int i = 0; i < batch; i++) {
            int item = tid + (i0 + i) * FA_THREADS, r = item / (D / 4), dim = (item % (D / 4)) * 4;
            uint2 hi, lo;
            split_half2(v[i].x, v[i].y, hi.x, lo.x);
            split_half2(v[i].z, v[i].w, hi.y, lo.y);
            *reinterpret_cast<uint2*>(qh + r * QS + dim) = hi;
            *reinterpret_cast<uint2*>(ql + r * QS + dim) = lo;
        }
    }

    int r0 = warp * 16 + group;  // this thread's rows r0 and r0 + 8 of the tile
    int posA = p0 + t0 + r0, posB = posA + 8;
    int firstA = window > 0 ? max(0, posA - window + 1) : 0, firstB = window > 0 ? max(0, posB - window + 1) : 0;
    int warpLast = p0 + t0 + warp * 16 + 15, warpFirst = window > 0 ? max(0, p0 + t0 + warp * 16 - window + 1) : 0;
    bool warpHasRows = warp * 16 < rows;
    float slope = slopes ? slopes[hd] : 0.f;
    float o[D / 8][4];
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};

    for (int kb = firstKey; kb <= lastPos; kb += FA_BN) {
        cp_async_wait<0>();
        __syncthreads();  // the staged tile is complete, and the previous tile is no longer read
        // Keys row-major by key, values transposed (dims by keys; lane = key, so a warp writes along one row); zero
        // past lastPos (the cache there holds no written values) and past the head dim.
#pragma unroll 4
        for (int i = 0; i < FA_TILE_ITEMS; i++) {
            int item = tid + i * FA_THREADS, j = item / (D / 4), dim = (item % (D / 4)) * 4;
            bool valid = kb + j <= lastPos && dim < d;
            if constexpr (HALF_KV) {
                uint2 hi = valid ? *reinterpret_cast<const uint2*>(stage + j * SS + dim) : make_uint2(0u, 0u);
                *reinterpret_cast<uint2*>(kh + j * QS + dim) = hi;
            } else {
                float4 v = valid ? *reinterpret_cast<const float4*>(stage + j * SS + dim) : make_float4(0.f, 0.f, 0.f, 0.f);
                uint2 hi, lo;
                split_half2(v.x, v.y, hi.x, lo.x);
                split_half2(v.z, v.w, hi.y, lo.y);
                *reinterpret_cast<uint2*>(kh + j * QS + dim) = hi;
                *reinterpret_cast<uint2*>(kl + j * QS + dim) = lo;
            }
        }
#pragma unroll 4
        for (int i = 0; i < FA_TILE_ITEMS; i++) {
            int item = tid + i * FA_THREADS, j = item % FA_BN, dim = (item / FA_BN) * 4;
            bool valid = kb + j <= lastPos && dim < d;
            if constexpr (HALF_KV) {
                uint2 bits = valid ? *reinterpret_cast<const uint2*>(stage + (FA_BN + j) * SS + dim) : make_uint2(0u, 0u);
                const uint32_t words[2] = {bits.x, bits.y};
#pragma unroll
                for (int e = 0; e < 4; e++) vh[(dim + e) * VS + j] = __ushort_as_half((unsigned short)(words[e >> 1] >> (16 * (e & 1))));
            } else {
                float4 v = valid ? *reinterpret_cast<const float4*>(stage + (FA_BN + j) * SS + dim) : make_float4(0.f, 0.f, 0.f, 0.f);
                const float vs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    __half h = __float2half_rn(vs[e]);
                    vh[(dim + e) * VS + j] = h;
                    vl[(dim + e) * VS + j] = __float2half_rn(vs[e] - __half2float(h));
                }
            }
        }
        __syncthreads();  // the converted tile is complete and the staging area free: the next copy overlaps this tile
        if (kb + FA_BN <= lastPos) stage_tile(kb + FA_BN);
        // A warp whose 16 rows see none of these keys skips them (warp-uniform).
        if (!warpHasRows || kb > warpLast || kb + FA_BN - 1 < warpFirst) continue;

        // hi·hi and the two cross terms in separate accumulators: twice the independent MMA chains.
        float s[FA_BN / 8][4], sx[FA_BN / 8][4];
#pragma unroll
        for (int nt = 0; nt < FA_BN / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[nt][e] = sx[nt][e] = 0.f;
#pragma unroll 4
        for (int kk = 0; kk < D / 16; kk++) {
            const int qo = r0 * QS + kk * 16 + quad * 2;
            uint32_t ahi[4], alo[4];
            ahi[0] = *reinterpret_cast<const uint32_t*>(qh + qo);
            ahi[1] = *reinterpret_cast<const uint32_t*>(qh + qo + 8 * QS);
            ahi[2] = *reinterpret_cast<const uint32_t*>(qh + qo + 8);
            ahi[3] = *reinterpret_cast<const uint32_t*>(qh + qo + 8 * QS + 8);
            alo[0] = *reinterpret_cast<const uint32_t*>(ql + qo);
            alo[1] = *reinterpret_cast<const uint32_t*>(ql + qo + 8 * QS);
            alo[2] = *reinterpret_cast<const uint32_t*>(ql + qo + 8);
            alo[3] = *reinterpret_cast<const uint32_t*>(ql + qo + 8 * QS + 8);
#pragma unroll
            for (int nt = 0; nt < FA_BN / 8; nt++) {
                const int ko = (nt * 8 + group) * QS + kk * 16 + quad * 2;
                uint32_t bh0 = *reinterpret_cast<const uint32_t*>(kh + ko), bh1 = *reinterpret_cast<const uint32_t*>(kh + ko + 8);
                mma_f16(sx[nt], alo, bh0, bh1);
                if constexpr (!HALF_KV) {
                    uint32_t bl0 = *reinterpret_cast<const uint32_t*>(kl + ko), bl1 = *reinterpret_cast<const uint32_t*>(kl + ko + 8);
                    mma_f16(sx[nt], ahi, bl0, bl1);
                }
                mma_f16(s[nt], ahi, bh0, bh1);
            }
        }
#pragma unroll
        for (int nt = 0; nt < FA_BN / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[nt][e] += sx[nt][e];
        // Scores, masks and the online softmax; element e of tile nt is row r0 (+8 for e ≥ 2), key kb + nt·8 + 2·quad + (e & 1).
        float mx[2] = {mrow[0], mrow[1]};
#pragma unroll
        for (int nt = 0; nt < FA_BN / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int row = e >> 1, key = kb + nt * 8 + quad * 2 + (e & 1);
                float v = __fmul_rn(__fadd_rn(s[nt][e], __fmul_rn(slope, (float)key)), scale);
                if (cap > 0.f) v = cap * tanhf(v / cap);
                if (key > (row ? posB : posA) || key < (row ? firstB : firstA)) v = -INFINITY;
                s[nt][e] = v;
                mx[row] = fmaxf(mx[row], v);
            }
        float alpha[2], mUse[2];
#pragma unroll
        for (int row = 0; row < 2; row++) {
            mx[row] = fmaxf(mx[row], __shfl_xor_sync(0xFFFFFFFFu, mx[row], 1));
            mx[row] = fmaxf(mx[row], __shfl_xor_sync(0xFFFFFFFFu, mx[row], 2));
            mUse[row] = mx[row] == -INFINITY ? 0.f : mx[row];  // no key yet: exp(−inf − 0) = 0, never NaN
            alpha[row] = expf(mrow[row] - mUse[row]);
            mrow[row] = mx[row];
            lrow[row] *= alpha[row];
        }
#pragma unroll
        for (int nt = 0; nt < FA_BN / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float p = expf(s[nt][e] - mUse[e >> 1]);
                s[nt][e] = p;
                lrow[e >> 1] += p;
            }
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++) {
            o[dt][0] *= alpha[0]; o[dt][1] *= alpha[0];
            o[dt][2] *= alpha[1]; o[dt][3] *= alpha[1];
        }
        // P·V: the score tiles 2kk and 2kk + 1 are the A fragment of key step kk.
#pragma unroll
        for (int kk = 0; kk < FA_BN / 16; kk++) {
            uint32_t phi[4], plo[4];
            split_half2(s[2 * kk][0], s[2 * kk][1], phi[0], plo[0]);
            split_half2(s[2 * kk][2], s[2 * kk][3], phi[1], plo[1]);
            split_half2(s[2 * kk + 1][0], s[2 * kk + 1][1], phi[2], plo[2]);
            split_half2(s[2 * kk + 1][2], s[2 * kk + 1][3], phi[3], plo[3]);
#pragma unroll
            for (int dt = 0; dt < D / 8; dt++) {
                const int vo = (dt * 8 + group) * VS + kk * 16 + quad * 2;
                uint32_t bh0 = *reinterpret_cast<const uint32_t*>(vh + vo), bh1 = *reinterpret_cast<const uint32_t*>(vh + vo + 8);
                mma_f16(o[dt], plo, bh0, bh1);
                if constexpr (!HALF_KV) {
                    uint32_t bl0 = *reinterpret_cast<const uint32_t*>(vl + vo), bl1 = *reinterpret_cast<const uint32_t*>(vl + vo + 8);
                    mma_f16(o[dt], phi, bl0, bl1);
                }
                mma_f16(o[dt], phi, bh0, bh1);
            }
        }
    }

#pragma unroll
    for (int row = 0; row < 2; row++) {
        lrow[row] += __shfl_xor_sync(0xFFFFFFFFu, lrow[row], 1);
        lrow[row] += __shfl_xor_sync(0xFFFFFFFFu, lrow[row], 2);
    }
    float inv0 = lrow[0] > 0.f ? 1.f / lrow[0] : 0.f, inv1 = lrow[1] > 0.f ? 1.f / lrow[1] : 0.f;
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
        int dim = dt * 8 + quad * 2;
        if (dim >= d) continue;
        if (r0 < rows)
            *reinterpret_cast<float2*>(out + ((int64_t)(t0 + r0) * heads + hd) * d + dim) = make_float2(o[dt][0] * inv0, o[dt][1] * inv0);
        if (r0 + 8 < rows)
            *reinterpret_cast<float2*>(out + ((int64_t)(t0 + r0 + 8) * heads + hd) * d + dim) = make_float2(o[dt][2] * inv1, o[dt][3] * inv1);
    }
}

// The padded head dim of the flash kernel, 0 when the head is too wide for it.
inline int flash_head_dim(int d) { return d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : d <= 256 ? 256 : 0; }

template <typename KV>
inline size_t flash_attention_shared_bytes_typed(int d)
{
    switch (flash_head_dim(d)) {
    case 32: return FlashLayout<32, KV>::bytes;
    case 64: return FlashLayout<64, KV>::bytes;
    case 128: return FlashLayout<128, KV>::bytes;
    case 256: return FlashLayout<256, KV>::bytes;
    default: return 0;
    }
}

inline size_t flash_attention_shared_bytes(int d, int kvType)
{
    return kvType == KV_F16 ? flash_attention_shared_bytes_typed<__half>(d) : flash_attention_shared_bytes_typed<float>(d);
}

template <typename KV>
inline cudaError_t flash_attention_set_shared(int d, size_t bytes)
{
    switch (flash_head_dim(d)) {
    case 32: return cudaFuncSetAttribute(k_flash_attention<32, KV>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    case 64: return cudaFuncSetAttribute(k_flash_attention<64, KV>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    case 128: return cudaFuncSetAttribute(k_flash_attention<128, KV>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    default: return cudaFuncSetAttribute(k_flash_attention<256, KV>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    }
}

// Raises the kernel's dynamic shared memory limit for head dim d and the cache type; false when the device cannot hold
// it (the caller keeps the plain kernel then).
inline bool flash_attention_prepare(int d, int kvType, int optinBytes)
{
    size_t bytes = flash_attention_shared_bytes(d, kvType);
    if (bytes == 0 || bytes > (size_t)optinBytes) return false;
    cudaError_t e = kvType == KV_F16 ? flash_attention_set_shared<__half>(d, bytes) : flash_attention_set_shared<float>(d, bytes);
    return e == cudaSuccess;
}

template <typename KV>
inline void launch_flash_attention_typed(const float* q, const KV* kc, const KV* vc, float* out, int n, int heads, int kvHeads,
                                         int d, const int32_t* pos0, int window, float scale, float cap, const float* slopes,
                                         cudaStream_t stream)
{
    dim3 grid((n + FA_BM - 1) / FA_BM, heads);
    size_t bytes = flash_attention_shared_bytes_typed<KV>(d);
    switch (flash_head_dim(d)) {
    case 32: launch(k_flash_attention<32, KV>, grid, FA_THREADS, bytes, stream, q, kc, vc, out, n, heads, kvHeads, d, pos0, window,
                    scale, cap, slopes); break;
    case 64: launch(k_flash_attention<64, KV>, grid, FA_THREADS, bytes, stream, q, kc, vc, out, n, heads, kvHeads, d, pos0, window,
                    scale, cap, slopes); break;
    case 128: launch(k_flash_attention<128, KV>, grid, FA_THREADS, bytes, stream, q, kc, vc, out, n, heads, kvHeads, d, pos0, window,
                     scale, cap, slopes); break;
    default: launch(k_flash_attention<256, KV>, grid, FA_THREADS, bytes, stream, q, kc, vc, out, n, heads, kvHeads, d, pos0, window,
                    scale, cap, slopes); break;
    }
}

// After flash_attention_prepare(d, kvType) returned true.
inline void launch_flash_attention(const float* q, const void* kc, const void* vc, int kvType, float* out, int n, int heads,
                                   int kvHeads, int d, const int32_t* pos0, int window, float scale, float cap,
                                   const float* slopes, cudaStream_t stream)
{
    if (kvType == KV_F16)
        launch_flash_attention_typed(q, static_cast<const __half*>(kc), static_cast<const __half*>(vc), out, n, heads, kvHeads, d,
                                     pos0, window, scale, cap, slopes, stream);
    else
        launch_flash_attention_typed(q, static_cast<const float*>(kc), static_cast<const float*>(vc), out, n, heads, kvHeads, d,
                                     pos0, window, scale, cap, slopes, stream);
}

} // namespace odllm_cuda
