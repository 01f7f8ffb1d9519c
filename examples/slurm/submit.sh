#!/usr/bin/env bash
# Submits a sweep as a Slurm job array of N shards and a merge that runs when all of
# them succeeded. Prints the two job ids ("ARRAY MERGE").
#   examples/slurm/submit.sh SWEEP STORE N [explore sweep options...]
#   examples/slurm/submit.sh sweeps/cifar-tables.toml /shared/explore/cifar-tables 10 \
#       --data /shared/datasets/cifar10-jpeg
# CPUS (default 2) sets CPUs per shard; EXPLORE the binary (default: explore on PATH).
# Job logs go to the folder this is run from.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,8p' "$0" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
export SWEEP=$1 STORE=$2
shards=$3
shift 3
export EXPLORE_ARGS="$*"
export EXPLORE=${EXPLORE:-explore}
case $shards in '' | *[!0-9]* | 0) echo "N must be a count of at least 1, got \"$shards\"" >&2; exit 2 ;; esac
array=$(sbatch --parsable --array="0-$((shards - 1))" --cpus-per-task="${CPUS:-2}" "$here/sweep.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" "$here/merge.sbatch")
echo "$array ${merge%%;*}"
