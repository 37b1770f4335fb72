#!/usr/bin/env bash
# On a GPU machine after device_run.sh built the library: odllm bench --backend cuda on the synthetic Gemma-2B shape for each
# quantization given, then (PROFILE=1) Nsight Compute's speed-of-light summary of the decode kernels for the first,
# (PROFILE_PREFILL=1) of the first layer's kernels of a 1024-token prefill.
#   device_bench.sh <published odllm folder> quant ...
set -u
odllm=$1/odllm; shift
export ODLLM_CUDA_LIBRARY=${ODLLM_CUDA_LIBRARY:-/tmp/odllm-cuda-build/libodllm_cuda.so}
for quant in "$@"; do
  "$odllm" bench --backend cuda --synthetic gemma-2b --quant "$quant" --prompt-tokens "${PROMPT:-1024}" --gen-tokens "${GEN:-256}" --json
done
if [ "${PROFILE:-0}" = 1 ]; then
  # Caches and clocks as in a real run, so small kernels are timed as they run between their neighbours.
  ncu --graph-profiling node --cache-control none --clock-control none \
      --launch-skip "${SKIP:-600}" --launch-count "${COUNT:-120}" --section SpeedOfLight --print-summary per-kernel \
      "$odllm" bench --backend cuda --synthetic gemma-2b --quant "$1" --prompt-tokens 1024 --gen-tokens 8 2>&1 \
    | grep -E "^  [a-zA-Z].*Device 0|Duration|DRAM Throughput" | sed -E 's/\(const [^)]*\)//; s/ +/ /g' | cut -c1-150 | head -120
fi
if [ "${PROFILE_PREFILL:-0}" = 1 ]; then
  # Each launch of the warm-up prefill's first layer (norm, q/k/v, RoPE, attention, quantize, o, norm, gate+up, quantize, down).
  ncu --cache-control none --clock-control none --launch-count "${COUNT:-14}" --section SpeedOfLight \
      "$odllm" bench --backend cuda --synthetic gemma-2b --quant "$1" --prompt-tokens 1024 --gen-tokens 1 2>&1 \
    | grep -E "^  [a-zA-Z].*Device 0|Duration|DRAM Throughput|Compute \(SM\) Throughput" | sed -E 's/\(const [^)]*\)//; s/ +/ /g' | cut -c1-150 | head -80
fi
