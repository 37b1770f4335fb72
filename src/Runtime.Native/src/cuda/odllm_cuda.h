/*
 * odllm_cuda: the whole transformer forward pass on an NVIDIA GPU, as its own shared library
 * (libodllm_cuda.so) so that CPU-only users never load CUDA. Weights are uploaded once in their
 * stored form (f32/f16/bf16/int8/q8_0/q4_0, the layouts of odllm.h), the KV cache and every
 * activation stay in device memory, and only logits come back. The computation mirrors
 * src/Runtime/Inference/Transformer.cs, which is the reference.
 *
 * Every function returns an odllm_cuda_status; odllm_cuda_last_error() holds the message of the
 * last failure on the calling thread. A sequence is not thread-safe; a model may be shared.
 */
#ifndef ODLLM_CUDA_H
#define ODLLM_CUDA_H

#include <stdint.h>

#if defined(_WIN32)
#  define ODLLM_CUDA_API __declspec(dllexport)
#else
#  define ODLLM_CUDA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define ODLLM_CUDA_ABI_VERSION 3

typedef enum odllm_cuda_status {
    ODLLM_CUDA_OK = 0,
    ODLLM_CUDA_ERR_NO_DEVICE = 1,      /* no CUDA device, or the driver is missing or too old */
    ODLLM_CUDA_ERR_INVALID = 2,        /* a bad argument: null pointer, size, type or shape */
    ODLLM_CUDA_ERR_OUT_OF_MEMORY = 3,  /* a device or pinned host allocation failed */
    ODLLM_CUDA_ERR_CUDA = 4,           /* any other CUDA runtime error */
} odllm_cuda_status;

/* Norm, activation, layout and position kinds: the values of the C# enums in ModelConfig.cs. */
typedef struct odllm_cuda_config {
    int32_t vocab, hidden, layers, heads, kv_heads, head_dim, ffn;
    int32_t norm_kind;     /* 0 RMSNorm · w, 1 RMSNorm · (1 + w), 2 LayerNorm */
    int32_t activation;    /* 0 SiLU, 1 GELU tanh, 2 GELU erf */
    int32_t layout;        /* 0 sequential, 1 parallel, 2 sandwich */
    int32_t rotary_dim;    /* 0 = no rotary embedding */
    int32_t sliding_window;
    float norm_eps;
    float embed_scale;     /* 1, or √hidden rounded to f32 (Gemma) */
    float attn_scale;
    float attn_softcap;    /* 0 = off */
    float final_softcap;   /* 0 = off */
} odllm_cuda_config;

/* A matrix [rows, cols] in host memory, in an odllm_type layout; uploaded by odllm_cuda_model_create. */
typedef struct odllm_cuda_matrix {
    const void* data;
    int64_t bytes;
    int32_t type, rows, cols;
} odllm_cuda_matrix;

/* One decoder layer. Vectors are f32 host arrays; NULL where the architecture has none. */
typedef struct odllm_cuda_layer {
    odllm_cuda_matrix wq, wk, wv, wo, up, down, gate; /* gate.data NULL: plain feed-forward */
    const float *attn_norm, *attn_norm_bias, *ffn_norm, *ffn_norm_bias, *post_attn_norm, *post_ffn_norm;
    const float *bq, *bk, *bv, *bo, *bup, *bdown;
    const float *q_norm, *k_norm;  /* per-head LayerNorm weights [heads·head_dim], [kv_heads·head_dim] */
    int32_t sliding;
} odllm_cuda_layer;

typedef struct odllm_cuda_model odllm_cuda_model;
typedef struct odllm_cuda_sequence odllm_cuda_sequence;

ODLLM_CUDA_API int odllm_cuda_abi_version(void);
/* Message of the last failure on this thread ("" when none). */
ODLLM_CUDA_API const char* odllm_cuda_last_error(void);
/* Number of usable devices (0 with no driver); *count is always written. */
ODLLM_CUDA_API int odllm_cuda_device_count(int32_t* count);
/* Device name, compute capability, memory and the peak memory bandwidth the device reports. */
ODLLM_CUDA_API int odllm_cuda_device_info(int32_t device, char* name, int32_t name_capacity, int32_t* cc_major,
                                          int32_t* cc_minor, int64_t* total_memory);

/* Uploads every weight. output may point at the same host bytes as embedding (tied): stored once.
   inv_freq has rotary_dim/2 values; alibi_slopes has `heads` values (as added to q·k) or is NULL. */
ODLLM_CUDA_API int odllm_cuda_model_create(int32_t device, const odllm_cuda_config* config,
                                           const odllm_cuda_matrix* embedding, const odllm_cuda_matrix* output,
                                           const float* output_norm, const float* output_norm_bias,
                                           const float* output_bias, const odllm_cuda_layer* layers,
                                           const float* inv_freq, const float* alibi_slopes,
                                           odllm_cuda_model** model);
ODLLM_CUDA_API void odllm_cuda_model_free(odllm_cuda_model* model);
/* Bytes of weights the model holds on the device. */
ODLLM_CUDA_API int64_t odllm_cuda_model_weight_bytes(const odllm_cuda_model* model);

/* A KV cache of `capacity` positions in kv_type (0 f32, 1 f16 rounded to nearest even) and one sequence's activations. */
ODLLM_CUDA_API int odllm_cuda_sequence_create(odllm_cuda_model* model, int32_t capacity, int32_t kv_type,
                                              odllm_cuda_sequence** sequence);
ODLLM_CUDA_API void odllm_cuda_sequence_free(odllm_cuda_sequence* sequence);
/* Runs n tokens at positions pos0…pos0+n−1, appending their keys and values. Writes the logits of the last
   position to logits[vocab], or of every position (logits[n·vocab]) when all_positions is non-zero.
   A one-token call with use_graph set replays a captured CUDA graph of the decode step. */
ODLLM_CUDA_API int odllm_cuda_sequence_forward(odllm_cuda_sequence* sequence, const int32_t* tokens, int32_t n,
                                               int32_t pos0, int32_t all_positions, int32_t use_graph, float* logits);
/* Page-locks the caller's buffer of `count` floats (at least one row of logits): forward passes given that buffer
   copy their logits straight into it instead of through the library's own pinned buffer. It must stay allocated at
   that address until replaced (another call; NULL releases it) or the sequence is freed. */
ODLLM_CUDA_API int odllm_cuda_sequence_set_output(odllm_cuda_sequence* sequence, float* host, int64_t count);
/* Device-to-device copy bandwidth measured on `bytes` (read + written per second), for roofline ratios. */
ODLLM_CUDA_API int odllm_cuda_measure_bandwidth(int32_t device, int64_t bytes, double* bytes_per_second);

#ifdef __cplusplus
}
#endif
#endif
