#!/usr/bin/env bash
# One `goe segment` shard per Slurm array task: the volume is read over https by every task, the
# output is written to a shared POSIX filesystem (Lustre, GPFS, NFS: anything where rename is atomic),
# and each task does `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT` of the blocks.
#
#   sbatch examples/segment/slurm-array.sh
#   sbatch --array=0-255%64 examples/segment/slurm-array.sh      # 256 shards, 64 at a time
#
# Tasks that fail or are pre-empted are requeued (or resubmitted with `sbatch --array=<ids>`) and continue
# where they stopped: --resume skips every part already marked done. When all tasks are done, draw the
# previews once: the same command without --shard, with --resume --png DIR (it computes nothing).
#
#SBATCH --job-name=goe-segment
#SBATCH --array=0-63
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=logs/goe-segment-%A_%a.log
set -euo pipefail

# Edit these four for your site; every task must see the same RUN and OUT paths' contents.
REPO=${REPO:-$HOME/graph-of-experts}                      # a checkout with node_modules installed
RUN=${RUN:-/shared/goe/runs/ink-v1}                       # `goe train` run folder (read-only is fine)
VOLUME=${VOLUME:-https://data.example.org/scrolls/scroll1.zarr}
OUT=${OUT:-/shared/goe/predictions/scroll1-ink.zarr}

COUNT=${SLURM_ARRAY_TASK_COUNT:?run this script with sbatch --array}
INDEX=${SLURM_ARRAY_TASK_ID:?run this script with sbatch --array}
# Array ids must be 0..COUNT-1 for the shards to cover every block exactly once.
if [ "$INDEX" -ge "$COUNT" ]; then
  echo "array task id $INDEX is not below the task count $COUNT: use --array=0-$((COUNT - 1))" >&2
  exit 2
fi

cd "$REPO"
exec node apps/pipeline/bin/goe.js segment \
  --checkpoint "$RUN" \
  --volume "$VOLUME" \
  --out "$OUT" \
  --level "${LEVEL:-0}" \
  --shard "$INDEX/$COUNT" \
  --resume \
  --backend "${BACKEND:-auto}"
