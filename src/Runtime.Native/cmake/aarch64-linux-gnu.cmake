# Cross-compiles for Linux AArch64 with Debian's gcc-aarch64-linux-gnu; CTest runs the tests under
# qemu-aarch64 (Debian qemu-user). ODLLM_QEMU_CPU picks the emulated core, e.g. cortex-a72 (plain
# NEON), cortex-a76 (+dotprod), max (+I8MM), so one run per value covers every dispatch level.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(ODLLM_QEMU_CPU "max" CACHE STRING "CPU model qemu-aarch64 emulates for the tests")
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu ${ODLLM_QEMU_CPU})
