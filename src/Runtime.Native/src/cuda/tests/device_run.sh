#!/usr/bin/env bash
# On a GPU machine, from the repository root: build libodllm_cuda and its kernel tests with CMake, run them
# (CTest), then every fixture through the published odllm CLI (no .NET SDK needed there).
#   device_run.sh <published odllm folder> <fixtures folder> [quant ...]
# The published folder: dotnet publish src/Cli -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -o DIR
set -u
odllm_dir=$1; fixtures=$2; shift 2
build=${ODLLM_CUDA_BUILD:-/tmp/odllm-cuda-build}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader
nvcc --version | tail -1
cmake -S src/Runtime.Native -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=${ODLLM_CUDA_ARCH:-90} > "$build.configure.log" 2>&1 \
  || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j 16 2>&1 | grep -E "error|warning|FAILED" | head -60
[ -f "$build/libodllm_cuda.so" ] || { echo "build failed"; exit 1; }
# Register spills and stack frames of every kernel (none expected), compiled beside the checks and printed last.
nvcc -arch=sm_${ODLLM_CUDA_ARCH:-90} -O3 -std=c++17 -Xptxas -v -c src/Runtime.Native/src/cuda/odllm_cuda.cu -o /dev/null > "$build.ptxas.log" 2>&1 &
ptxas=$!
(cd "$build" && timeout 120 ctest --output-on-failure -j 16 -E cuda_kernels) 2>&1 | tail -n 40
# The GPU kernel checks: failures, the tensor-core kernels' worst errors and the count.
"$build/test_cuda" | grep -E "^FAIL|flash|mma|passed" | tail -80
export ODLLM_CUDA_LIBRARY="$build/libodllm_cuda.so"
python3 src/Runtime.Native/src/cuda/tests/check_fixtures.py "$odllm_dir/odllm" "$fixtures" "$@"
wait $ptxas
grep -B1 -E "[1-9][0-9]* bytes spill|[1-9][0-9]* bytes stack" "$build.ptxas.log" | grep -oE "Function properties for [^ ]+|[0-9]+ bytes stack.*" | head -20
