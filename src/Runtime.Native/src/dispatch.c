/* CPU feature and topology detection: which kernel table a context gets, how many threads. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__linux__)
#  include <sched.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#  include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#  include <sys/auxv.h>
#  include <asm/hwcap.h>
#endif

#include "kernels.h"

int odllm_cpu_has_avx2(void) {
#if defined(ODLLM_HAVE_AVX2)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned fma = 1u << 12, osxsave = 1u << 27, avx = 1u << 28, f16c = 1u << 29;
    if ((c & (fma | osxsave | avx | f16c)) != (fma | osxsave | avx | f16c)) return 0;
    /* The OS must save YMM state on context switches (XCR0 bits 1 and 2), or AVX faults. */
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    if ((xcr0_lo & 6u) != 6u) return 0;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 5)) != 0;
#else
    return 0;
#endif
}

/* AVX-VNNI (vpdpbusd with a VEX encoding, on 256-bit registers): cpuid leaf 7, subleaf 1, EAX bit 4. */
int odllm_cpu_has_avx_vnni(void) {
#if defined(ODLLM_HAVE_AVX_VNNI)
    if (!odllm_cpu_has_avx2() || __get_cpuid_max(0, NULL) < 7) return 0;
    unsigned a, b, c, d;
    __cpuid_count(7, 1, a, b, c, d);
    return (a & (1u << 4)) != 0;
#else
    return 0;
#endif
}

/*
 * AVX-512 F, BW, VL and VNNI (cpuid leaf 7: EBX bits 16, 30, 31; ECX bit 11), and an OS that saves the opmask and
 * both halves of all 32 ZMM registers (XCR0 bits 5, 6, 7) besides SSE/AVX state (bits 1, 2).
 */
int odllm_cpu_has_avx512_vnni(void) {
#if defined(ODLLM_HAVE_AVX512_VNNI)
    if (!odllm_cpu_has_avx2()) return 0;
    unsigned a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned f = 1u << 16, bw = 1u << 30, vl = 1u << 31;
    if ((b & (f | bw | vl)) != (f | bw | vl) || !(c & (1u << 11))) return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    return (xcr0_lo & 0xE6u) == 0xE6u;
#else
    return 0;
#endif
}

int odllm_cpu_has_neon(void) {
#if defined(ODLLM_HAVE_NEON) && defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
#elif defined(ODLLM_HAVE_NEON)
    return 1; /* Advanced SIMD is mandatory on AArch64; only Linux exposes the bit. */
#else
    return 0;
#endif
}

/* The sdot/udot instructions (Armv8.2 dotprod, mandatory from Armv8.4). */
int odllm_cpu_has_dotprod(void) {
#if defined(ODLLM_HAVE_NEON) && defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return 0;
#endif
}

/* The smmla/ummla instructions (Armv8.6 I8MM); Linux reports them in the second hwcap word. */
int odllm_cpu_has_i8mm(void) {
#if defined(ODLLM_HAVE_I8MM) && defined(__linux__) && defined(HWCAP2_I8MM)
    return odllm_cpu_has_dotprod() && (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0;
#else
    return 0;
#endif
}

#if defined(__linux__)
static int read_int_file(const char * path, int * value) {
    FILE * f = fopen(path, "r");
    if (!f) return 0;
    int ok = fscanf(f, "%d", value) == 1;
    fclose(f);
    return ok;
}
#endif

/*
 * Distinct (package, core) pairs among the CPUs this process may run on: hyper-threads share
 * one core's FMA units, so more threads than cores only adds synchronization.
 */
int odllm_cpu_physical_cores(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int allowed = CPU_COUNT(&set);
        long keys[CPU_SETSIZE];
        int cores = 0;
        for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
            if (!CPU_ISSET(cpu, &set)) continue;
            char path[128];
            int core = -1, package = 0;
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
            if (!read_int_file(path, &core)) return allowed > 0 ? allowed : 1;
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
            read_int_file(path, &package);
            long key = ((long)package << 20) | (long)core;
            int seen = 0;
            for (int i = 0; i < cores && !seen; i++) seen = keys[i] == key;
            if (!seen) keys[cores++] = key;
        }
        if (cores > 0) return cores;
        if (allowed > 0) return allowed;
    }
#endif
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}
