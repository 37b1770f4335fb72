/*
 * The NEON table a third time, compiled with +dotprod+i8mm (the dispatcher hands it out only when HWCAP_ASIMDDP and
 * HWCAP2_I8MM are set): prefill's integer products become smmla 2x2 tiles; decode (m = 1) stays on sdot.
 */
#define ODLLM_NEON_DOT 1
#define ODLLM_NEON_I8MM 1
#include "kernels_neon.c"
