// Kernel-by-kernel checks of the CUDA backend against scalar CPU references in double precision, on fresh random
// data, with outputs poisoned (NaN) before each launch so an unwritten element fails. Exit 77 (CTest's skip code)
// when no device is present.
#include "../cuda_kernels.cuh"
#include "../cuda_prefill.cuh"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

using namespace odllm_cuda;

static int g_failures = 0, g_checks = 0;
static std::mt19937 g_rng(1234);

#define CUDA_OK(call)                                                                                   \
    do {                                                                                                \
        cudaError_t e_ = (call);                                                                        \
        if (e_ != cudaSuccess) { fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(1); } \
    } while (0)

static float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }
static std::vector<float> random_vector(size_t n, float scale = 1.f)
{
    std::vector<float> v(n);
    for (auto& x : v) x = uniform(-scale, scale);
    return v;
}

template <typename T> struct Device {
    T* p = nullptr;
    size_t n = 0;
    explicit Device(size_t count) : n(count) { CUDA_OK(cudaMalloc(&p, count * sizeof(T) + 16)); }
    Device(const std::vector<T>& host) : Device(host.size()) { CUDA_OK(cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice)); }
    // A weight matrix of stored bytes, in the device layout the kernels read (q8_0/q4_0 split by upload_matrix).
    Device(const std::vector<T>& host, int weightType) : Device(host.size()) { CUDA_OK(upload_matrix(p, host.data(), (int64_t)(n * sizeof(T)), weightType)); }
    ~Device() { cudaFree(p); }
    void poison() { CUDA_OK(cudaMemset(p, 0xFF, n * sizeof(T))); }  // all-ones bits: NaN for floats
    std::vector<T> get() const
    {
        std::vector<T> h(n);
        CUDA_OK(cudaDeviceSynchronize());
        CUDA_OK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
        return h;
    }
};

static void check(const char* what, const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& scale,
                  double tolerance)
{
    g_checks++;
    double worst = 0; size_t at = 0;
    bool bad = got.size() != want.size();
    for (size_t i = 0; i < want.size() && !bad; i++) {
        double err = std::fabs((double)got[i] - want[i]) / (scale.empty() ? 1.0 : std::max(scale[i], 1e-30));
        if (!(err <= tolerance)) bad = true;
        if (!(err <= worst)) { worst = err; at = i; }
    }
    if (bad) {
        g_failures++;
        printf("FAIL %-48s worst %.3g at %zu (got %.8g want %.8g)\n", what, worst, at, at < got.size() ? got[at] : NAN, want[at]);
    } else {
        printf("ok   %-48s worst %.3g\n", what, worst);
    }
}

static std::vector<float> quantize_reference(const std::vector<float>& x, int rows, int k, std::vector<int8_t>* q = nullptr,
                                             std::vector<float>* scales = nullptr);

// ---- weight encodings (random bytes in the stored layouts) and their scalar decoding ----

static float half_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }
static uint16_t float_to_half(float f) { return __half_as_ushort(__float2half(f)); }

// ---- the KV cache in its element type: f32, or binary16 rounded to nearest even ----

static const char* kv_name(int kvType) { return kvType == KV_F16 ? "f16" : "f32"; }

// x as the cache stores it, read back as f32.
static std::vector<float> kv_rounded(const std::vector<float>& x, int kvType)
{
    std::vector<float> r(x);
    if (kvType == KV_F16)
        for (auto& e : r) e = half_to_float(float_to_half(e));
    return r;
}

// The bytes of x in the cache's element type.
static std::vector<uint8_t> kv_bytes(const std::vector<float>& x, int kvType)
{
    std::vector<uint8_t> b(x.size() * kv_element_bytes(kvType));
    if (kvType == KV_F16) {
        for (size_t i = 0; i < x.size(); i++) {
            uint16_t h = float_to_half(x[i]);
            memcpy(&b[i * 2], &h, 2);
        }
    } else {
        memcpy(b.data(), x.data(), b.size());
    }
    return b;
}

// Cache bytes back to f32.
static std::vector<float> kv_floats(const std::vector<uint8_t>& b, int kvType)
{
    std::vector<float> x(b.size() / kv_element_bytes(kvType));
    if (kvType == KV_F16) {
        for (size_t i = 0; i < x.size(); i++) {
            uint16_t h;
            memcpy(&h, &b[i * 2], 2);
            x[i] = half_to_float(h);
        }
    } else {
        memcpy(x.data(), b.data(), x.size() * sizeof(float));
    }
    return x;
}

static std::vector<uint8_t> random_matrix(int type, int rows, int cols)
{
    std::vector<uint8_t> b;
    auto push16 = [&](uint16_t v) { b.push_back((uint8_t)v); b.push_back((uint8_t)(v >> 8)); };
    switch (type) {
    case TYPE_F32:
        for (int i = 0; i < rows * cols; i++) { float f = uniform(-1, 1); uint8_t* p = (uint8_t*)&f; b.insert(b.end(), p, p + 4); }
        break;
    case TYPE_F16:
        for (int i = 0; i < rows * cols; i++) push16(float_to_half(uniform(-1, 1)));
        break;
    case TYPE_BF16:
        for (int i = 0; i < rows * cols; i++) { float f = uniform(-1, 1); uint32_t u; memcpy(&u, &f, 4); push16((uint16_t)(u >> 16)); }
        break;
    case TYPE_INT8:
        for (int i = 0; i < rows * cols; i++) b.push_back((uint8_t)(int8_t)(g_rng() % 255 - 127));
        for (int r = 0; r < rows; r++) { float s = uniform(0.001f, 0.02f); uint8_t* p = (uint8_t*)&s; b.insert(b.end(), p, p + 4); }
        break;
    case TYPE_Q8_0:
        for (int blk = 0; blk < rows * cols / 32; blk++) {
            push16(float_to_half(uniform(0.001f, 0.02f)));
            for (int i = 0; i < 32; i++) b.push_back((uint8_t)(int8_t)(g_rng() % 255 - 127));
        }
        break;
    default:
        for (int blk = 0; blk < rows * cols / 32; blk++) {
            push16(float_to_half(uniform(0.01f, 0.2f)));
            for (int i = 0; i < 16; i++) b.push_back((uint8_t)(g_rng() & 0xFF));
        }
        break;
    }
    return b;
}

static double decode(int type, const std::vector<uint8_t>& b, int rows, int cols, int r, int c)
{
    int64_t i = (int64_t)r * cols + c;
    switch (type) {
    case TYPE_F32: { float f; memcpy(&f, &b[i * 4], 4); return f; }
    case TYPE_F16: return half_to_float((uint16_t)(b[i * 2] | b[i * 2 + 1] << 8));
    case TYPE_BF16: { uint32_t u = (uint32_t)(b[i * 2] | b[i * 2 + 1] << 8) << 16; float f; memcpy(&f, &u, 4); return f; }
    case TYPE_INT8: { float s; memcpy(&s, &b[(int64_t)rows * cols + r * 4], 4); return (int8_t)b[i] * (double)s; }
    case TYPE_Q8_0: {
        const uint8_t* blk = &b[(i / 32) * 34];
        return (int8_t)blk[2 + c % 32] * (double)half_to_float((uint16_t)(blk[0] | blk[1] << 8));
    }
    default: {
        const uint8_t* blk = &b[(i / 32) * 18];
        int j = c % 32;
        int q = j < 16 ? (blk[2 + j] & 0xF) : (blk[2 + j - 16] >> 4);
        return (q - 8) * (double)half_to_float((uint16_t)(blk[0] | blk[1] << 8));
    }
    }
}

static const char* type_name(int t)
{
    static const char* names[] = {"f32", "f16", "bf16", "int8", "q8_0", "q4_0"};
    return names[t];
}

static void test_matmul(int type, int m, int k, int n, bool withBias)
{
    auto w = random_matrix(type, n, k);
    auto x = random_vector((size_t)m * k);
    auto bias = random_vector(n);
    std::vector<double> want((size_t)m * n), scale((size_t)m * n);
    for (int t = 0; t < m; t++)
        for (int r = 0; r < n; r++) {
            double s = withBias ? bias[r] : 0, a = withBias ? std::fabs(bias[r]) : 0;
            for (int c = 0; c < k; c++) { double p = x[(size_t)t * k + c] * decode(type, w, n, k, r, c); s += p; a += std::fabs(p); }
            want[(size_t)t * n + r] = s;
            scale[(size_t)t * n + r] = a;  // error relative to Σ|x·w|: f32 rounding of the sum
        }
    Device<uint8_t> dw(w, type);
    Device<float> dx(x), db(bias), dy((size_t)m * n);
    dy.poison();
    launch_matmul(dx.p, m, k, dw.p, type, n, withBias ? db.p : nullptr, dy.p, 0);
    CUDA_OK(cudaGetLastError());
    char what[96];
    snprintf(what, sizeof what, "matmul %s m=%d k=%d n=%d%s", type_name(type), m, k, n, withBias ? " +bias" : "");
    check(what, dy.get(), want, scale, 1e-5);
}

// The tensor-core prefill product of the integer types over quantized activations, against double precision.
static void test_matmul_mma(int type, int m, int k, int n)
{
    auto w = random_matrix(type, n, k);
    auto x = random_vector((size_t)m * k, 3.f);
    auto bias = random_vector(n);
    auto xq = quantize_reference(x, m, k);
    std::vector<double> want((size_t)m * n), scale((size_t)m * n);
    for (int t = 0; t < m; t++)
        for (int r = 0; r < n; r++) {
            double s = bias[r], a = std::fabs(bias[r]);
            for (int c = 0; c < k; c++) { double p = xq[(size_t)t * k + c] * decode(type, w, n, k, r, c); s += p; a += std::fabs(p); }
            want[(size_t)t * n + r] = s;
            scale[(size_t)t * n + r] = a;
        }
    Device<uint8_t> dw(w, type);
    Device<float> dx(x), db(bias), dy((size_t)m * n), qf((size_t)m * k), qd((size_t)m * (k / 32));
    Device<int8_t> q((size_t)m * k);
    dy.poison();
    launch_quantize(dx.p, q.p, qd.p, qf.p, m, k, 0);
    launch_matmul_mma(q.p, qd.p, m, k, dw.p, type, n, db.p, dy.p, 0);
    CUDA_OK(cudaGetLastError());
    char what[96];
    snprintf(what, sizeof what, "matmul mma %s m=%d k=%d n=%d", type_name(type), m, k, n);
    check(what, dy.get(), want, scale, 1e-5);
}

// The tensor-core product's fused forms: q/k/v in one launch, the gate (up·act(gate)), the activation, the residual.
static void test_matmul_mma_fused(int type, int m, int k, int mode)
{
    int count = mode == GEMV_GATED ? 2 : mode == GEMV_PLAIN ? 3 : 1;
    int rowsOf[3] = {mode == GEMV_GATED ? 200 : 300, mode == GEMV_GATED ? 200 : 40, 72};
    std::vector<std::vector<uint8_t>> w;
    std::vector<std::vector<float>> bias;
    for (int i = 0; i < count; i++) { w.push_back(random_matrix(type, rowsOf[i], k)); bias.push_back(random_vector(rowsOf[i])); }
    auto x = random_vector((size_t)m * k, 3.f);
    auto xq = quantize_reference(x, m, k);
    auto resid = random_vector((size_t)m * rowsOf[0]);
    auto dot = [&](int i, int t, int r, double* scale) {
        double s = 0, a = 0;
        for (int c = 0; c < k; c++) { double p = xq[(size_t)t * k + c] * decode(type, w[i], rowsOf[i], k, r, c); s += p; a += std::fabs(p); }
        *scale = a;
        return s;
    };
    std::vector<Device<uint8_t>*> dw;
    std::vector<Device<float>*> db, dy;
    for (int i = 0; i < count; i++) {
        dw.push_back(new Device<uint8_t>(w[i], type));
        db.push_back(new Device<float>(bias[i]));
        dy.push_back(mode == GEMV_RESIDUAL ? new Device<float>(resid) : new Device<float>((size_t)m * rowsOf[i]));
        if (mode != GEMV_RESIDUAL) dy[i]->poison();
    }
    Device<float> dx(x), qd((size_t)m * (k / 32));
    Device<int8_t> q((size_t)m * k);
    launch_quantize(dx.p, q.p, qd.p, nullptr, m, k, 0);
    MmaArgs a{};
    for (int i = 0; i < count; i++) a.m[i] = GemvMatrix{dw[i]->p, mode == GEMV_GATED && i == 0 ? nullptr : db[i]->p, dy[i]->p, rowsOf[i]};
    a.count = count; a.rows = m; a.k = k; a.mode = mode; a.activation = ACT_GELU_TANH;
    a.xq = q.p; a.xd = qd.p;
    a.resid = mode == GEMV_RESIDUAL ? dy[0]->p : nullptr;  // in place, as x += o(att)
    launch_matmul_mma(a, type, 0);
    CUDA_OK(cudaGetLastError());
    auto gelu = [](double g) { return 0.5 * g * (1 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))); };
    char what[96];
    for (int i = (mode == GEMV_GATED ? 1 : 0); i < count; i++) {
        std::vector<double> want((size_t)m * rowsOf[i]), scale((size_t)m * rowsOf[i]);
        for (int t = 0; t < m; t++)
            for (int r = 0; r < rowsOf[i]; r++) {
                size_t o = (size_t)t * rowsOf[i] + r;
                double sc, v = dot(i, t, r, &sc) + bias[i][r];
                scale[o] = sc + std::fabs(bias[i][r]) + 1e-3;
                if (mode == GEMV_ACTIVATE) v = gelu(v);
                if (mode == GEMV_RESIDUAL) { v += resid[o]; scale[o] += std::fabs(resid[o]); }
                if (mode == GEMV_GATED) { double sg; double g = dot(0, t, r, &sg); v = v * gelu(g); scale[o] = (scale[o] + sg) * (1 + std::fabs(g)); }
                want[o] = v;
            }
        snprintf(what, sizeof what, "matmul mma %s m=%d k=%d mode=%d matrix %d/%d", type_name(type), m, k, mode, i + 1, count);
        check(what, dy[i]->get(), want, scale, 1e-5);
    }
    for (int i = 0; i < count; i++) { delete dw[i]; delete db[i]; delete dy[i]; }
}

static void test_embed(int type)
{
    int rows = 50, cols = 96;
    auto e = random_matrix(type, rows, cols);
    std::vector<int32_t> tokens = {3, 0, 49, 17, 3};
    float scale = 45.254833995939045f;
    std::vector<double> want;
    for (int t : tokens) for (int c = 0; c < cols; c++) want.push_back(decode(type, e, rows, cols, t, c) * (double)scale);
    Device<uint8_t> de(e, type);
    Device<int32_t> dt(tokens);
    Device<float> dx(tokens.size() * cols);
    dx.poison();
    launch_embed(dt.p, (int)tokens.size(), de.p, type, rows, cols, scale, dx.p, 0);
    char what[64];
    snprintf(what, sizeof what, "embedding %s", type_name(type));
    check(what, dx.get(), want, {}, 1e-5 * 50);
}

static void test_norm(int kind, int rows, int h, int heads, bool withBias)
{
    auto x = random_vector((size_t)rows * h, 3.f);
    for (int i = 0; i < h; i++) x[i] += 5.f;  // a row with a large mean tests LayerNorm's centring
    auto w = random_vector((size_t)(heads > 0 ? heads : 1) * h);
    auto b = random_vector(h);
    std::vector<double> want((size_t)rows * h);
    for (int r = 0; r < rows; r++) {
        const float* xr = &x[(size_t)r * h];
        const float* wr = &w[heads > 0 ? (size_t)(r % heads) * h : 0];
        double mean = 0, var = 0, ss = 0;
        for (int i = 0; i < h; i++) { mean += xr[i]; ss += (double)xr[i] * xr[i]; }
        mean /= h;
        for (int i = 0; i < h; i++) var += (xr[i] - mean) * (xr[i] - mean);
        var /= h;
        for (int i = 0; i < h; i++) {
            double y;
            if (kind == NORM_LAYER) y = (xr[i] - mean) / std::sqrt(var + 1e-5) * wr[i] + (withBias ? b[i] : 0);
            else y = xr[i] / std::sqrt(ss / h + 1e-5) * (kind == NORM_RMS_PLUS_ONE ? 1 + wr[i] : wr[i]);
            want[(size_t)r * h + i] = y;
        }
    }
    Device<float> dx(x), dw(w), db(b), dy((size_t)rows * h);
    dy.poison();
    launch_norm(dx.p, dy.p, dw.p, withBias ? db.p : nullptr, rows, h, heads, kind, 1e-5f, 0);
    char what[96];
    snprintf(what, sizeof what, "norm kind=%d rows=%d h=%d heads=%d%s", kind, rows, h, heads, withBias ? " +bias" : "");
    check(what, dy.get(), want, {}, 2e-5);
    // In place, as the forward pass uses it for q/k norms and sandwich norms.
    launch_norm(dx.p, dx.p, dw.p, withBias ? db.p : nullptr, rows, h, heads, kind, 1e-5f, 0);
    snprintf(what, sizeof what, "norm in place kind=%d h=%d", kind, h);
    check(what, dx.get(), want, {}, 2e-5);
}

static void test_rope_store(int n, int heads, int kvHeads, int d, int rotary, int pos0, int kvType)
{
    auto q = random_vector((size_t)n * heads * d), k = random_vector((size_t)n * kvHeads * d), v = random_vector((size_t)n * kvHeads * d);
    int half = rotary / 2, capacity = pos0 + n + 3, kvDim = kvHeads * d;
    std::vector<float> inv(std::max(half, 1));
    for (int i = 0; i < half; i++) inv[i] = (float)(1.0 / std::pow(10000.0, 2.0 * i / rotary));
    auto rotate = [&](std::vector<float> src, int hs) {
        std::vector<double> out(src.begin(), src.end());
        for (int t = 0; t < n; t++)
            for (int h = 0; h < hs; h++)
                for (int i = 0; i < half; i++) {
                    float angle = (float)(pos0 + t) * inv[i];
                    double c = (float)std::cos((double)angle), s = (float)std::sin((double)angle);
                    size_t base = ((size_t)t * hs + h) * d;
                    out[base + i] = src[base + i] * c - src[base + i + half] * s;
                    out[base + i + half] = src[base + i + half] * c + src[base + i] * s;
                }
        return out;
    };
    auto wantQ = rotate(q, heads), wantK = rotate(k, kvHeads);
    Device<float> dq(q), dk(k), dv(v), dinv(inv), cosT((size_t)capacity * std::max(half, 1)), sinT((size_t)capacity * std::max(half, 1));
    size_t cacheBytes = (size_t)capacity * kvDim * kv_element_bytes(kvType);
    Device<uint8_t> kc(cacheBytes), vc(cacheBytes);
    kc.poison();  // NaN in either element type
    vc.poison();
    Device<int32_t> dpos(std::vector<int32_t>{pos0});
    if (half > 0) launch_rope_table(cosT.p, sinT.p, capacity, half, dinv.p, 0);
    launch_rope_store(dq.p, dk.p, dv.p, kc.p, vc.p, kvType, n, heads, kvHeads, d, half, dpos.p, cosT.p, sinT.p, 0);
    CUDA_OK(cudaGetLastError());
    char what[96];
    snprintf(what, sizeof what, "rope q n=%d d=%d rotary=%d pos0=%d %s", n, d, rotary, pos0, kv_name(kvType));
    check(what, dq.get(), wantQ, {}, 1e-5);
    snprintf(what, sizeof what, "rope k n=%d d=%d rotary=%d pos0=%d %s", n, d, rotary, pos0, kv_name(kvType));
    auto gotK = dk.get();
    check(what, gotK, wantK, {}, 1e-5);
    auto cache = kv_floats(kc.get(), kvType), values = kv_floats(vc.get(), kvType);
    std::vector<float> storedK(cache.begin() + (size_t)pos0 * kvDim, cache.begin() + (size_t)(pos0 + n) * kvDim);
    std::vector<float> storedV(values.begin() + (size_t)pos0 * kvDim, values.begin() + (size_t)(pos0 + n) * kvDim);
    // The cache holds the rotated keys and the values exactly as the element type rounds them (to the bit for f16).
    auto roundedK = kv_rounded(gotK, kvType), roundedV = kv_rounded(v, kvType);
    snprintf(what, sizeof what, "kv store k n=%d pos0=%d %s", n, pos0, kv_name(kvType));
    check(what, storedK, std::vector<double>(roundedK.begin(), roundedK.end()), {}, 0.0);
    snprintf(what, sizeof what, "kv store v n=%d pos0=%d %s", n, pos0, kv_name(kvType));
    check(what, storedV, std::vector<double>(roundedV.begin(), roundedV.end()), {}, 0.0);
}

// kvType f16: the reference reads the keys and values rounded to binary16, as the kernels do.
// Decoding with RoPE and the KV append inside the attention kernel: the output equal to the bit to k_rope_store then
// the decode attention on the rotated q, and the appended key and value equal to the bit to what k_rope_store wrote.
static void test_attention_rope_in_kernel(int pos, int heads, int kvHeads, int d, int rotary, int window, int kvType)
{
    int half = rotary / 2, capacity = pos + 40, kvDim = kvHeads * d;
    auto q = random_vector((size_t)heads * d), k = random_vector(kvDim), v = random_vector(kvDim);
    auto cache = kv_bytes(random_vector((size_t)capacity * kvDim), kvType), values = kv_bytes(random_vector((size_t)capacity * kvDim), kvType);
    std::vector<float> inv(std::max(half, 1));
    for (int i = 0; i < half; i++) inv[i] = (float)(1.0 / std::pow(10000.0, 2.0 * i / std::max(rotary, 1)));
    Device<float> dinv(inv), cosT((size_t)capacity * std::max(half, 1)), sinT((size_t)capacity * std::max(half, 1));
    if (half > 0) launch_rope_table(cosT.p, sinT.p, capacity, half, dinv.p, 0);
    Device<int32_t> dpos(std::vector<int32_t>{pos});
    float scale = 1.f / std::sqrt((float)d);
    int maxKeys = capacity;
    // Separate launches.
    Device<float> qa(q), ka(k), va(v), outA((size_t)heads * d), partialA(attention_partial_floats(heads, d, maxKeys));
    Device<uint8_t> kcA(cache), vcA(values);
    launch_rope_store(qa.p, ka.p, va.p, kcA.p, vcA.p, kvType, 1, heads, kvHeads, d, half, dpos.p, cosT.p, sinT.p, 0);
    CUDA_OK(attention_split_set_shared(attention_split_shared_bytes(heads, kvHeads, d, kvType)));
    launch_attention_decode(qa.p, kcA.p, vcA.p, kvType, outA.p, partialA.p, heads, kvHeads, d, dpos.p, window, scale, 0.f, nullptr,
                            maxKeys, 0);
    // One attention launch on the unrotated q, k and v.
    Device<float> qb(q), kb(k), vb(v), outB((size_t)heads * d), partialB(attention_partial_floats(heads, d, maxKeys));
    Device<uint8_t> kcB(cache), vcB(values);
    outB.poison();
    launch_attention_decode(qb.p, kcB.p, vcB.p, kvType, outB.p, partialB.p, heads, kvHeads, d, dpos.p, window, scale, 0.f, nullptr,
                            maxKeys, 0, nullptr, nullptr, nullptr, AttentionRope{kb.p, vb.p, cosT.p, sinT.p, half});
    CUDA_OK(cudaGetLastError());
    auto a = outA.get();
    char what[128];
    snprintf(what, sizeof what, "decode attention with RoPE + append inside pos=%d h=%d/%d d=%d rotary=%d win=%d %s", pos, heads,
             kvHeads, d, rotary, window, kv_name(kvType));
    check(what, outB.get(), std::vector<double>(a.begin(), a.end()), {}, 0.0);
    auto cacheA = kcA.get(), cacheB = kcB.get(), valuesA = vcA.get(), valuesB = vcB.get();
    g_checks++;
    bool same = cacheA == cacheB && valuesA == valuesB;
    if (!same) g_failures++;
    printf("%s %s: caches equal to the bit\n", same ? "ok  " : "FAIL", what);
}

static void test_attention(int n, int pos0, int heads, int kvHeads, int d, int window, float cap, bool alibi, int kvType)
{
    int total = pos0 + n, kvDim = kvHeads * d;
    auto q = random_vector((size_t)n * heads * d);
    auto kc = kv_rounded(random_vector((size_t)total * kvDim), kvType), vc = kv_rounded(random_vector((size_t)total * kvDim), kvType);
    std::vector<float> slopes(heads);
    for (int h = 0; h < heads; h++) slopes[h] = 0.5f / (h + 1);
    float scale = 1.f / std::sqrt((float)d);
    std::vector<double> want((size_t)n * heads * d);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < heads; h++) {
            int pos = pos0 + t, first = window > 0 ? std::max(0, pos - window + 1) : 0, g = h / (heads / kvHeads);
            std::vector<double> s;
            double mx = -1e300;
            for (int key = first; key <= pos; key++) {
                double dot = 0;
                for (int i = 0; i < d; i++) dot += (double)q[((size_t)t * heads + h) * d + i] * kc[(size_t)key * kvDim + g * d + i];
                double score = (dot + (alibi ? slopes[h] * (double)key : 0)) * scale;
                if (cap > 0) score = cap * std::tanh(score / cap);
                s.push_back(score);
                mx = std::max(mx, score);
            }
            double sum = 0;
            for (auto& e : s) { e = std::exp(e - mx); sum += e; }
            for (int i = 0; i < d; i++) {
                double acc = 0;
                for (size_t j = 0; j < s.size(); j++) acc += s[j] / sum * vc[(size_t)(first + j) * kvDim + g * d + i];
                want[((size_t)t * heads + h) * d + i] = acc;
            }
        }
    Device<float> dq(q), dout((size_t)n * heads * d), dslopes(slopes);
    Device<uint8_t> dk(kv_bytes(kc, kvType)), dv(kv_bytes(vc, kvType));
    Device<int32_t> dpos(std::vector<int32_t>{pos0});
    dout.poison();
    // A capacity beyond the current position, as in a session: the extra keys must not be read.
    int maxKeys = total + 100;
    size_t shared = attention_shared_bytes(d, maxKeys);
    CUDA_OK(attention_set_shared(shared));
    launch_attention(dq.p, dk.p, dv.p, kvType, dout.p, n, heads, kvHeads, d, dpos.p, window, scale, cap, alibi ? dslopes.p : nullptr, maxKeys, 0);
    CUDA_OK(cudaGetLastError());
    char what[128];
    snprintf(what, sizeof what, "attention n=%d pos0=%d h=%d/%d d=%d win=%d cap=%g alibi=%d %s", n, pos0, heads, kvHeads, d, window, cap,
             alibi, kv_name(kvType));
    check(what, dout.get(), want, {}, 2e-5);
    if (n > 1) {
        int optin = 0;
        CUDA_OK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
        if (flash_attention_prepare(d, kvType, optin)) {
            dout.poison();
            launch_flash_attention(dq.p, dk.p, dv.p, kvType, dout.p, n, heads, kvHeads, d, dpos.p, window, scale, cap,
                                   alibi ? dslopes.p : nullptr, 0);
            CUDA_OK(cudaGetLastError());
            snprintf(what, sizeof what, "flash attention n=%d pos0=%d h=%d/%d d=%d win=%d cap=%g alibi=%d %s", n, pos0, heads, kvHeads, d,
                     window, cap, alibi, kv_name(kvType));
            check(what, dout.get(), want, {}, 5e-5);
        } else {
            printf("skip flash attention d=%d: needs %zu bytes of shared memory, the device allows %d\n", d,
                   flash_attention_shared_bytes(d, kvType), optin);
        }
    }
    if (n == 1) {
        Device<float> partial(attention_partial_floats(heads, d, maxKeys));
        // The output also quantized for the next product: equal to the bit to quantizing the f32 output.
        size_t count = (size_t)heads * d;
        Device<int8_t> q(count);
        Device<float> qd(count / 32 + 1), qf(count);
        partial.poison();
        dout.poison();
        qf.poison();
        CUDA_OK(attention_split_set_shared(attention_split_shared_bytes(heads, kvHeads, d, kvType)));
        bool quantized = launch_attention_decode(dq.p, dk.p, dv.p, kvType, dout.p, partial.p, heads, kvHeads, d, dpos.p, window, scale, cap,
                                                 alibi ? dslopes.p : nullptr, maxKeys, 0, q.p, qd.p, qf.p);
        CUDA_OK(cudaGetLastError());
        snprintf(what, sizeof what, "split decode attention pos0=%d h=%d/%d d=%d win=%d cap=%g alibi=%d %s", pos0, heads, kvHeads, d, window,
                 cap, alibi, kv_name(kvType));
        auto got = dout.get();
        check(what, got, want, {}, 2e-5);
        snprintf(what, sizeof what, "split decode attention d=%d quantizes its output iff d %% 32 == 0", d);
        check(what, {quantized ? 1.f : 0.f}, {d % 32 == 0 ? 1.0 : 0.0}, {}, 0.0);
        if (quantized) {
            std::vector<int8_t> wantQ;
            std::vector<float> wantD;
            auto wantF = quantize_reference(got, 1, (int)count, &wantQ, &wantD);
            auto gotQ = q.get();
            snprintf(what, sizeof what, "split decode attention d=%d quantized output (int8, scales, q·d)", d);
            check(what, std::vector<float>(gotQ.begin(), gotQ.end()), std::vector<double>(wantQ.begin(), wantQ.end()), {}, 0.0);
            auto gotD = qd.get();
            gotD.resize(wantD.size());
            check(what, gotD, std::vector<double>(wantD.begin(), wantD.end()), {}, 0.0);
            check(what, qf.get(), std::vector<double>(wantF.begin(), wantF.end()), {}, 0.0);
        }
    }
}

// The CPU kernels' activation quantization (ManagedKernels.QuantizeActivations), to the bit.
static std::vector<float> quantize_reference(const std::vector<float>& x, int rows, int k, std::vector<int8_t>* q,
                                             std::vector<float>* scales)
{
    std::vector<float> out(x.size());
    for (int r = 0; r < rows; r++)
        for (int start = 0; start < k; start += 32) {
            int end = std::min(k, start + 32);
            float amax = 0;
            for (int c = start; c < end; c++) amax = std::max(amax, std::fabs(x[(size_t)r * k + c]));
            float d = amax / 127, id = d != 0 ? 1 / d : 0;
            if (scales) scales->push_back(d);
            for (int c = start; c < end; c++) {
                float qv = std::nearbyint(x[(size_t)r * k + c] * id);
                if (q) q->push_back((int8_t)qv);
                out[(size_t)r * k + c] = qv * d;
            }
        }
    return out;
}

static void test_quantize(int rows, int k)
{
    auto x = random_vector((size_t)rows * k, 4.f);
    for (int i = 0; i < 32 && i < k; i++) x[i] = 0.f;  // an all-zero block: d = 0, q = 0
    std::vector<int8_t> wantQ;
    std::vector<float> wantD;
    auto want = quantize_reference(x, rows, k, &wantQ, &wantD);
    int blocks = (k + 31) / 32;
    Device<float> dx(x), qf(x.size()), qd((size_t)rows * blocks);
    Device<int8_t> q(x.size());
    qf.poison();
    launch_quantize(dx.p, q.p, qd.p, qf.p, rows, k, 0);
    char what[64];
    snprintf(what, sizeof what, "quantize rows=%d k=%d (q·d)", rows, k);
    check(what, qf.get(), std::vector<double>(want.begin(), want.end()), {}, 0.0);
    auto gotQ = q.get();
    std::vector<float> gq(gotQ.begin(), gotQ.end());
    snprintf(what, sizeof what, "quantize rows=%d k=%d (int8)", rows, k);
    check(what, gq, std::vector<double>(wantQ.begin(), wantQ.end()), {}, 0.0);
    snprintf(what, sizeof what, "quantize rows=%d k=%d (scales)", rows, k);
    check(what, qd.get(), std::vector<double>(wantD.begin(), wantD.end()), {}, 0.0);
}

// The normalized rows and, fused, their quantized copy (compared with quantizing the GPU's own normalized rows).
static void test_norm_quantized(int kind, int rows, int h)
{
    auto x = random_vector((size_t)rows * h, 3.f);
    auto w = random_vector(h);
    int blocks = (h + 31) / 32;
    Device<float> dx(x), dw(w), dy((size_t)rows * h), qf((size_t)rows * h), qd((size_t)rows * blocks);
    Device<int8_t> q((size_t)rows * h);
    qf.poison();
    launch_norm(dx.p, dy.p, dw.p, nullptr, rows, h, 0, kind, 1e-5f, 0, q.p, qd.p, qf.p);
    CUDA_OK(cudaGetLastError());
    auto y = dy.get();
    auto want = quantize_reference(y, rows, h);
    char what[64];
    snprintf(what, sizeof what, "norm + quantize kind=%d rows=%d h=%d", kind, rows, h);
    check(what, qf.get(), std::vector<double>(want.begin(), want.end()), {}, 0.0);
}

// The decode GEMV in every mode against double-precision references over the same (for integer types, quantized) input.
static void test_gemv(int type, int k, int mode, int count, int rows0 = 96)
{
    int rowsOf[3] = {rows0, 32, 40};
    if (mode == GEMV_GATED) rowsOf[1] = rowsOf[0];
    std::vector<std::vector<uint8_t>> w;
    std::vector<std::vector<float>> bias;
    for (int i = 0; i < count; i++) { w.push_back(random_matrix(type, rowsOf[i], k)); bias.push_back(random_vector(rowsOf[i])); }
    auto x = random_vector(k, 2.f);
    bool integer = quantizes_activations(type);
    auto xUsed = integer ? quantize_reference(x, 1, k) : x;
    auto resid = random_vector(rowsOf[0]), extra = random_vector(rowsOf[0]);
    auto dot = [&](int i, int r, double* scale) {
        double s = 0, a = 0;
        for (int c = 0; c < k; c++) { double p = xUsed[c] * decode(type, w[i], rowsOf[i], k, r, c); s += p; a += std::fabs(p); }
        *scale = a;
        return s;
    };
    std::vector<Device<uint8_t>*> dw;
    std::vector<Device<float>*> db, dy;
    for (int i = 0; i < count; i++) { dw.push_back(new Device<uint8_t>(w[i], type)); db.push_back(new Device<float>(bias[i])); dy.push_back(new Device<float>(rowsOf[i])); dy[i]->poison(); }
    int blocks = (k + 31) / 32;
    Device<float> dx(x), qf(k), qd(blocks), dres(resid), dextra(extra);
    Device<int8_t> q(k);
    launch_quantize(dx.p, q.p, qd.p, qf.p, 1, k, 0);
    GemvArgs a{};
    for (int i = 0; i < count; i++) a.m[i] = GemvMatrix{dw[i]->p, mode == GEMV_GATED && i == 0 ? nullptr : db[i]->p, dy[i]->p, rowsOf[i]};
    a.count = count; a.k = k; a.mode = mode; a.activation = ACT_GELU_TANH;
    a.x = integer ? qf.p : dx.p; a.xq = q.p; a.xd = qd.p;
    a.resid = dres.p; a.extra = mode == GEMV_RESIDUAL ? dextra.p : nullptr;
    // GATED also quantizes its output (by the last block to finish each 32 rows): launched twice, so the second launch
    // finds the completion counters reset.
    int outBlocks = (rowsOf[0] + 31) / 32;
    Device<int8_t> yq(rowsOf[0]);
    Device<float> yd(outBlocks);
    Device<unsigned> counters(std::vector<unsigned>(outBlocks, 0u));
    if (mode == GEMV_GATED) { a.yq = yq.p; a.yd = yd.p; a.counters = counters.p; }
    for (int launchIndex = 0; launchIndex < (mode == GEMV_GATED ? 2 : 1); launchIndex++) {
        yd.poison();
        launch_gemv(a, type, 0);
        CUDA_OK(cudaGetLastError());
    }
    auto gelu = [](double g) { return 0.5 * g * (1 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))); };
    char what[96];
    for (int i = (mode == GEMV_GATED ? 1 : 0); i < count; i++) {
        std::vector<double> want(rowsOf[i]), scale(rowsOf[i]);
        for (int r = 0; r < rowsOf[i]; r++) {
            double sc, v = dot(i, r, &sc) + bias[i][r];
            scale[r] = sc + std::fabs(bias[i][r]) + 1e-3;
            if (mode == GEMV_ACTIVATE) v = gelu(v);
            if (mode == GEMV_RESIDUAL) { v = resid[r] + (v + extra[r]); scale[r] += std::fabs(resid[r]) + std::fabs(extra[r]); }
            if (mode == GEMV_GATED) { double sg; double g = dot(0, r, &sg); v = v * gelu(g); scale[r] = (scale[r] + sg) * (1 + std::fabs(g)); }
            want[r] = v;
        }
        snprintf(what, sizeof what, "gemv %s k=%d mode=%d matrix %d/%d%s", type_name(type), k, mode, i + 1, count,
                 integer && gemv_uses_int(type, k) ? " (dp4a)" : "");
        auto got = dy[i]->get();
        check(what, got, want, scale, 2e-5);
        if (mode == GEMV_GATED) {
            std::vector<int8_t> wantQ;
            std::vector<float> wantD;
            quantize_reference(got, 1, rowsOf[i], &wantQ, &wantD);
            auto gotQ = yq.get();
            snprintf(what, sizeof what, "gemv %s k=%d rows=%d gated, quantized output (int8, scales; launched twice)", type_name(type), k,
                     rowsOf[i]);
            check(what, std::vector<float>(gotQ.begin(), gotQ.end()), std::vector<double>(wantQ.begin(), wantQ.end()), {}, 0.0);
            check(what, yd.get(), std::vector<double>(wantD.begin(), wantD.end()), {}, 0.0);
            auto left = counters.get();
            check("gemv gated: completion counters left zeroed", std::vector<float>(left.begin(), left.end()),
                  std::vector<double>(left.size(), 0.0), {}, 0.0);
        }
    }
    for (int i = 0; i < count; i++) { delete dw[i]; delete db[i]; delete dy[i]; }
}

static void test_elementwise()
{
    size_t count = 10000;
    auto up = random_vector(count, 6.f), gate = random_vector(count, 6.f);
    for (int act = 0; act < 3; act++) {
        std::vector<double> want(count);
        for (size_t i = 0; i < count; i++) {
            double g = gate[i];
            double a = act == ACT_SILU ? g / (1 + std::exp(-g))
                     : act == ACT_GELU_TANH ? 0.5 * g * (1 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)))
                     : 0.5 * g * (1 + std::erf(g / std::sqrt(2.0)));
            want[i] = up[i] * a;
        }
        Device<float> du(up), dg(gate);
        launch_activate(du.p, dg.p, (int64_t)count, act, 0);
        char what[64];
        snprintf(what, sizeof what, "gated activation %d", act);
        check(what, du.get(), want, {}, 1e-5 * 36);
    }
    std::vector<double> capped(count);
    for (size_t i = 0; i < count; i++) capped[i] = 2.5 * std::tanh(up[i] / 2.5);
    Device<float> dc(up);
    launch_softcap(dc.p, (int64_t)count, 2.5f, 0);
    check("softcap 2.5", dc.get(), capped, {}, 1e-6 * 3);
}

int main()
{
    setvbuf(stdout, nullptr, _IONBF, 0);  // every check printed before a failing CUDA call ends the run
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("skipped: no CUDA device\n");
        return 77;
    }
    cudaDeviceProp p;
    CUDA_OK(cudaGetDeviceProperties(&p, 0));
    printf("device: %s (sm_%d%d)\n", p.name, p.major, p.minor);
    CUDA_OK(matmul_mma_prepare());
    for (int type = 0; type <= TYPE_Q4_0; type++) {
        for (int m : {1, 3, 5, 8, 9, 24, 70}) test_matmul(type, m, 256, 100, m % 2 == 1);
        test_matmul(type, 1, 2048, 33, false);
        test_matmul(type, 130, 96, 200, true);
        test_embed(type);
    }
    for (int kind = 0; kind < 3; kind++) {
        test_norm(kind, 5, 64, 0, kind == NORM_LAYER);
        test_norm(kind, 3, 2048, 0, false);
    }
    test_norm(NORM_LAYER, 12, 32, 4, false);  // per-head q/k norm
    for (int kv : {KV_F32, KV_F16}) {
        test_rope_store(3, 4, 2, 32, 32, 0, kv);
        test_rope_store(2, 4, 1, 16, 6, 37, kv);
        test_rope_store(1, 8, 1, 256, 256, 1000, kv);
        test_rope_store(2, 4, 4, 16, 0, 5, kv);  // ALiBi: only the store
        test_attention(1, 0, 4, 4, 32, 0, 0.f, false, kv);
        test_attention(24, 0, 4, 2, 32, 0, 0.f, false, kv);
        test_attention(1, 39, 8, 1, 256, 0, 0.f, false, kv);
        test_attention(16, 24, 4, 2, 32, 8, 5.f, false, kv);
        test_attention(5, 700, 4, 4, 64, 0, 0.f, true, kv);
        test_attention(1, 1300, 8, 1, 256, 0, 50.f, false, kv);
        test_attention(1, 1300, 4, 2, 64, 100, 0.f, true, kv);
        test_attention(1, 63, 4, 2, 32, 0, 0.f, false, kv);
        test_attention(1, 64, 4, 2, 32, 0, 0.f, false, kv);
        test_attention(1, 50, 4, 2, 80, 0, 0.f, false, kv);  // d not a multiple of 32: the output is not quantized
        // Prefill shapes for the flash kernel: several query tiles, ragged ends, padded head dims, GQA/MQA, window, caps.
        test_attention(150, 0, 8, 1, 256, 0, 0.f, false, kv);
        test_attention(100, 37, 4, 2, 256, 0, 30.f, false, kv);
        test_attention(70, 20, 4, 4, 80, 0, 0.f, true, kv);
        test_attention(130, 0, 4, 2, 64, 50, 0.f, false, kv);
        test_attention(40, 0, 6, 2, 8, 0, 0.f, false, kv);
        test_attention(65, 3, 2, 1, 128, 16, 20.f, true, kv);
        test_attention_rope_in_kernel(1030, 8, 1, 256, 256, 0, kv);  // Gemma-2B's shape
        test_attention_rope_in_kernel(70, 8, 2, 64, 16, 20, kv);      // partial rotary, GQA, sliding window
        test_attention_rope_in_kernel(0, 4, 4, 32, 0, 0, kv);         // ALiBi: only the append; the first position
    }
    test_elementwise();
    test_quantize(3, 256);
    test_quantize(2, 72);  // int8 rows of a length that is not a multiple of 32
    for (int type = TYPE_INT8; type <= TYPE_Q4_0; type++) {
        test_matmul_mma(type, 24, 64, 96);     // a fixture's shape: one stage, partly empty
        test_matmul_mma(type, 130, 512, 200);  // ragged tiles in both directions
        test_matmul_mma(type, 64, 2048, 64);
        test_matmul_mma(type, 200, 96, 130);    // an odd block count: a last pair of one block
        test_matmul_mma(type, 129, 1088, 260);  // a last stage of one block pair
        for (int mode : {GEMV_PLAIN, GEMV_GATED, GEMV_ACTIVATE, GEMV_RESIDUAL}) test_matmul_mma_fused(type, 150, 256, mode);
        test_matmul_mma_fused(type, 40, 160, GEMV_GATED);  // k of 5 blocks
    }
    for (int kind = 0; kind < 3; kind++) { test_norm_quantized(kind, 2, 2048); test_norm_quantized(kind, 3, 72); }
    for (int type = 0; type <= TYPE_Q4_0; type++) {
        test_gemv(type, 2048, GEMV_PLAIN, 3);
        test_gemv(type, 256, GEMV_PLAIN, 1);
        test_gemv(type, 96, GEMV_PLAIN, 2);  // the f32 path for the integer types (k not a multiple of 256)
        test_gemv(type, 16384, GEMV_RESIDUAL, 1);
        test_gemv(type, 512, GEMV_GATED, 2);
        test_gemv(type, 256, GEMV_GATED, 2, 40);  // a last block of 8 rows
        // More blocks than the device holds at once: three matrices' rows in one launch, the gated quantization's counters.
        test_gemv(type, 256, GEMV_PLAIN, 3, 20000);
        test_gemv(type, 2048, GEMV_GATED, 2, 12008);
        // 16384 rows and more: four rows per warp for q8_0/q4_0 (a last warp with 2 rows; a last group of 8 rows).
        test_gemv(type, 2048, GEMV_ACTIVATE, 1, 16386);
        test_gemv(type, 512, GEMV_GATED, 2, 16392);
        test_gemv(type, 8192, GEMV_PLAIN, 1, 2049);  // two warps per long row; a last block with one row
        test_gemv(type, 512, GEMV_ACTIVATE, 1);
    }
    printf("%d passed, %d failed\n", g_checks - g_failures, g_failures);
    return g_failures == 0 ? 0 : 1;
}
