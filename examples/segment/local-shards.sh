#!/usr/bin/env bash
# Runs `goe segment` as N shard processes on one machine, all writing into one output, then a last
# `--resume --png` pass that finds every part done and only draws the previews. The same commands, one
# per machine, are what the Kubernetes and Slurm examples beside this file run.
#
#   bash examples/segment/local-shards.sh RUN VOLUME OUT.zarr [N] [extra goe segment flags…]
#
# RUN: a run folder of `goe train`; VOLUME: a local path or an http(s) URL of a Zarr / OME-Zarr volume.
# A shard that fails can simply be started again with the same command: --resume skips its done parts.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
RUN=$1 VOLUME=$2 OUT=$3 N=${4:-4}
shift $(( $# < 4 ? $# : 4 ))
GOE="node $(cd "$(dirname "$0")/../.." && pwd)/apps/pipeline/bin/goe.js"

pids=()
for ((i = 0; i < N; i++)); do
  $GOE segment --checkpoint "$RUN" --volume "$VOLUME" --out "$OUT" --shard "$i/$N" --resume --quiet "$@" > "$OUT.shard-$i.json" &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "shard $i/$N failed; run this script again to finish it (--resume)" >&2
    status=1
  fi
done
[ $status -eq 0 ] || exit $status
# Every part is done now: this pass writes nothing but the previews.
$GOE segment --checkpoint "$RUN" --volume "$VOLUME" --out "$OUT" --resume --png "$OUT.png" --quiet "$@"
