/*
 * The NEON table again, compiled with +dotprod (this file alone gets the flag; the dispatcher hands the
 * table out only when HWCAP_ASIMDDP is set): the integer kernels' 4-product lanes become one sdot each.
 */
#define ODLLM_NEON_DOT 1
#include "kernels_neon.c"
