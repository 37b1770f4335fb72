#!/usr/bin/env python3
"""Every fixture through `odllm --backend cuda` on a GPU machine, against transformers' reference.json.

f32 (the stored weights): last logits of the prompt and of the 40-token sequence within 1e-3 (and the worst
difference printed), every argmax and the 16 greedy tokens equal. Reduced precision (f16, bf16, int8, q8, q4
converted on load): the GPU against the managed CPU kernels on the same stored bytes (both with the KV cache
type Auto picks), every argmax and greedy token equal and the logits within QUANT_TOLERANCE. The integer types
quantize activations per block of 32 on both sides; an activation whose scaled value lies within float rounding of
a .5 tie can round differently on the GPU (its norms sum in another order), which moves logits by up to a few
1e-2, so the logits bound is looser there, and — as in the xunit CUDA tests — an argmax may differ only where the
CPU's own margin between its choice and the GPU's is at most twice that bound (a near-tie): the greedy sequences
are compared up to their first step, which must be such a near-tie when they part.

usage: check_fixtures.py <odllm executable> <fixtures folder> [quant ...]
Prints one line per check and a closing "N passed, N failed".
"""
import concurrent.futures
import json
import os
import subprocess
import sys

TOLERANCE = 1e-3
QUANT_TOLERANCE = {"f16": 1e-3, "bf16": 1e-3, "int8": 5e-2, "q8": 5e-2, "q4": 5e-2}


def odllm(exe, *args):
    out = subprocess.run([exe, *args, "--json"], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"odllm {' '.join(args[:2])} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def max_diff(a, b):
    return max(abs(x - y) for x, y in zip(a, b)) if len(a) == len(b) else float("inf")


def main():
    exe, root = sys.argv[1], sys.argv[2]
    quants = sys.argv[3:]
    fixtures = [f for f in sorted(os.listdir(root)) if os.path.isfile(os.path.join(root, f, "reference.json"))]
    # One process per command, several fixtures at once: the models are tiny, process start dominates.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda f: check_fixture(exe, root, f, quants), fixtures))
    rows = [row for rs in results for row in rs]
    for ok, text in rows:
        print(text)
    failed = sum(1 for ok, _ in rows if not ok)
    print(f"{len(rows) - failed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def check_fixture(exe, root, fixture, quants):
    folder = os.path.join(root, fixture)
    rows = []

    def record(name, ok, detail):
        rows.append((ok, f"{'ok  ' if ok else 'FAIL'} {name:44s} {detail}"))

    ref = json.load(open(os.path.join(folder, "reference.json")))
    ids = ",".join(map(str, ref["input_ids"]))
    full = ",".join(map(str, ref["full_sequence_ids"]))
    try:
        prompt = odllm(exe, "logits", folder, "--ids", ids, "--backend", "cuda")
        whole = odllm(exe, "logits", folder, "--ids", full, "--backend", "cuda")
        greedy = odllm(exe, "generate", folder, "--ids", ids, "--max-new-tokens", "16", "--ignore-eos",
                       "--temperature", "0", "--backend", "cuda")
        d1 = max_diff(prompt["last_logits"], ref["logits_last"])
        d2 = max_diff(whole["last_logits"], ref["full_sequence_logits_last"])
        record(f"{fixture} f32 logits_last", d1 <= TOLERANCE, f"max|diff| {d1:.2e}")
        record(f"{fixture} f32 full_sequence_logits_last", d2 <= TOLERANCE, f"max|diff| {d2:.2e}")
        record(f"{fixture} f32 argmax (24 + 40 positions)",
               prompt["argmax"] == ref["argmax_per_position"] and whole["argmax"] == ref["full_sequence_argmax"], "")
        record(f"{fixture} f32 greedy 16 tokens", greedy["ids"] == ref["greedy_new_tokens"],
               f"{greedy['ids']}" if greedy["ids"] != ref["greedy_new_tokens"] else "")
    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
        record(f"{fixture} f32", False, str(e)[:200])
    for quant in quants:
        try:
            gpu = odllm(exe, "logits", folder, "--ids", ids, "--backend", "cuda", "--quant", quant)
            cpu = odllm(exe, "logits", folder, "--ids", ids, "--backend", "managed", "--quant", quant)
            g_gpu = odllm(exe, "generate", folder, "--ids", ids, "--max-new-tokens", "16", "--ignore-eos",
                          "--temperature", "0", "--backend", "cuda", "--quant", quant)
            g_cpu = odllm(exe, "generate", folder, "--ids", ids, "--max-new-tokens", "16", "--ignore-eos",
                          "--temperature", "0", "--backend", "managed", "--quant", quant)
            d = max_diff(gpu["last_logits"], cpu["last_logits"])
            tolerance = QUANT_TOLERANCE.get(quant, TOLERANCE)
            allowed = 2 * tolerance if quant in ("int8", "q8", "q4") else 0.0

            def cpu_margin(prefix, token):
                # The CPU's logit of its own choice minus that of `token`, after the ids in prefix.
                last = odllm(exe, "logits", folder, "--ids", ",".join(map(str, prefix)), "--backend", "managed",
                             "--quant", quant)["last_logits"]
                return max(last) - last[token]

            prompt_ids = ref["input_ids"]
            ties, worst, same = 0, 0.0, True
            for pos, (a, b) in enumerate(zip(gpu["argmax"], cpu["argmax"])):
                if a != b:
                    m = cpu_margin(prompt_ids[:pos + 1], a)
                    ties, worst, same = ties + 1, max(worst, m), same and m <= allowed
            parted = next((t for t, (a, b) in enumerate(zip(g_gpu["ids"], g_cpu["ids"])) if a != b), None)
            if parted is not None:
                m = cpu_margin(prompt_ids + g_gpu["ids"][:parted], g_gpu["ids"][parted])
                ties, worst, same = ties + 1, max(worst, m), same and m <= allowed
            detail = f"max|diff| {d:.2e}, argmax+greedy " + (
                "equal" if ties == 0 else f"equal but for {ties} near-tie(s), CPU margin <= {worst:.1e}" if same
                else f"DIFFER (CPU margin {worst:.1e})")
            if parted is not None:
                detail += f", greedy parts at step {parted}"
            record(f"{fixture} {quant} gpu vs cpu", d <= tolerance and same, detail)
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
            record(f"{fixture} {quant}", False, str(e)[:200])
    return rows


if __name__ == "__main__":
    sys.exit(main())
