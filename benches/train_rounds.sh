#!/bin/sh
# Training speed against PyTorch in alternating rounds, so that a machine whose speed
# drifts affects every contender alike: each round runs every given train_bench
# binary, then benches/pytorch_cifar10.py as PyTorch comes and held to AVX2.
# Usage: PYTHON=python-with-torch sh benches/train_rounds.sh ROUNDS TRAIN_BENCH...
# (build one with `cargo build --release --example train_bench`; copy it aside to
# keep a "before" binary).
set -eu
rounds=$1
shift
here=$(dirname "$0")
py=${PYTHON:-python3}
r=1
while [ "$r" -le "$rounds" ]; do
    echo "round $r"
    for bin in "$@"; do
        printf '%s: ' "$bin"
        "$bin" 5 3 2>&1 | grep '^explore'
    done
    printf 'pytorch: '
    "$py" "$here/pytorch_cifar10.py" 5 3 2 2>/dev/null
    printf 'pytorch-avx2: '
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 "$py" "$here/pytorch_cifar10.py" 5 3 2 2>/dev/null
    r=$((r + 1))
done
