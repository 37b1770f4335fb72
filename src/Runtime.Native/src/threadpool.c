/*
 * The persistent thread pool. Operators in a forward pass come microseconds apart, so workers
 * spin briefly on the job counter before sleeping on a condition variable: back-to-back calls
 * skip the futex round trip, idle pools cost no CPU.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(_M_X64)
#  include <immintrin.h>
#  define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#  define cpu_relax() __asm__ volatile("yield")
#else
#  define cpu_relax() ((void)0)
#endif

#include "kernels.h"

enum { SPIN_ITERATIONS = 1 << 12 };

typedef struct worker {
    odllm_pool * pool;
    int ith;
    pthread_t thread;
} worker;

struct odllm_pool {
    int n_threads;          /* including the caller */
    int n_started;          /* workers actually running */
    worker * workers;       /* n_threads - 1 of them */
    pthread_mutex_t mutex;
    pthread_cond_t work_cv;
    pthread_cond_t done_cv;
    atomic_uint generation; /* bumped once per job */
    atomic_int pending;     /* workers still running the current job */
    atomic_bool stop;
    /* The current job; written before generation is bumped, read after it is seen. */
    odllm_pool_fn fn;
    void * arg;
    int nth;
};

static void * worker_main(void * p) {
    worker * self = p;
    odllm_pool * pool = self->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        for (int i = 0; gen == seen && i < SPIN_ITERATIONS; i++) {
            cpu_relax();
            gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool->mutex);
            while ((gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen)
                pthread_cond_wait(&pool->work_cv, &pool->mutex);
            pthread_mutex_unlock(&pool->mutex);
        }
        seen = gen;
        if (atomic_load_explicit(&pool->stop, memory_order_acquire)) return NULL;
        /* Workers beyond this job's thread count still take part in the handshake. */
        if (self->ith < pool->nth) pool->fn(pool->arg, self->ith, pool->nth);
        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool->mutex);
            pthread_cond_signal(&pool->done_cv);
            pthread_mutex_unlock(&pool->mutex);
        }
    }
}

static void wake_all(odllm_pool * pool) {
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->work_cv);
    pthread_mutex_unlock(&pool->mutex);
}

static void stop_workers(odllm_pool * pool) {
    atomic_store_explicit(&pool->stop, 1, memory_order_release);
    wake_all(pool);
    for (int i = 0; i < pool->n_started; i++) pthread_join(pool->workers[i].thread, NULL);
}

int odllm_pool_create(int n_threads, odllm_pool ** out) {
    *out = NULL;
    odllm_pool * pool = calloc(1, sizeof *pool);
    if (!pool) return ODLLM_ERR_OUT_OF_MEMORY;
    pool->n_threads = n_threads;
    pool->workers = n_threads > 1 ? calloc((size_t)n_threads - 1, sizeof *pool->workers) : NULL;
    if (n_threads > 1 && !pool->workers) { free(pool); return ODLLM_ERR_OUT_OF_MEMORY; }
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->work_cv, NULL);
    pthread_cond_init(&pool->done_cv, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->stop, 0);
    for (int i = 0; i < n_threads - 1; i++) {
        pool->workers[i].pool = pool;
        pool->workers[i].ith = i + 1;
        if (pthread_create(&pool->workers[i].thread, NULL, worker_main, &pool->workers[i]) != 0) {
            odllm_pool_free(pool);
            return ODLLM_ERR_THREAD;
        }
        pool->n_started++;
    }
    *out = pool;
    return ODLLM_OK;
}

void odllm_pool_free(odllm_pool * pool) {
    if (!pool) return;
    stop_workers(pool);
    pthread_cond_destroy(&pool->done_cv);
    pthread_cond_destroy(&pool->work_cv);
    pthread_mutex_destroy(&pool->mutex);
    free(pool->workers);
    free(pool);
}

void odllm_pool_run(odllm_pool * pool, int nth, odllm_pool_fn fn, void * arg) {
    if (nth <= 1 || pool->n_threads <= 1) {
        fn(arg, 0, 1);
        return;
    }
    if (nth > pool->n_threads) nth = pool->n_threads;
    pool->fn = fn;
    pool->arg = arg;
    pool->nth = nth;
    atomic_store_explicit(&pool->pending, pool->n_threads - 1, memory_order_relaxed);
    wake_all(pool);
    fn(arg, 0, nth);
    for (int i = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0 && i < SPIN_ITERATIONS; i++)
        cpu_relax();
    if (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&pool->mutex);
        while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0)
            pthread_cond_wait(&pool->done_cv, &pool->mutex);
        pthread_mutex_unlock(&pool->mutex);
    }
}
