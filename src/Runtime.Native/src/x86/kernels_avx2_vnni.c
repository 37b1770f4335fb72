/*
 * The AVX2 table again, compiled with -mavxvnni (this file alone gets the flag; the dispatcher hands the table
 * out only when cpuid reports AVX-VNNI): the integer kernels' 4-product lanes become one vpdpbusd each.
 */
#define ODLLM_X86_VNNI 1
#include "kernels_avx2.c"
