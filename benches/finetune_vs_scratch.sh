#!/bin/sh
# Fine-tuned against from scratch, CIFAR-10 (docs/results/cifar-tables/README.md):
# each plan fine-tuned 3 epochs from the shipped original with Adam, then two
# from-scratch epochs of each (the 15-epoch recipe's cost per epoch), one run at a
# time. Run it on an otherwise idle machine; it takes about 35 min on 2 cores.
#   sh benches/finetune_vs_scratch.sh [DATA] [OUT]
# Compare each fine-tune's wall time with 15 x its plan's from-scratch epoch time.
set -eu
DATA=${1:-../shared/datasets/cifar10-jpeg}
OUT=${2:-output/finetune-vs-scratch}
mkdir -p "$OUT"
cargo build --release --quiet
T="./target/release/explore train architectures/cifar10_bn.toml --data $DATA"
for plan in uniform-3x3 uniform-32x32; do
  /usr/bin/time -v $T --plan architectures/plans/cifar10/$plan.toml --init models/cifar10_bn-original.safetensors \
    --epochs 3 --distill 4 --distill-weight 0.5 --optimizer adam --lr 0.002 -o "$OUT/finetune-$plan.safetensors" \
    > "$OUT/finetune-$plan.log" 2>&1
done
for plan in uniform-3x3 uniform-32x32; do
  /usr/bin/time -v $T --plan architectures/plans/cifar10/$plan.toml --epochs 2 --lr 0.1 --augment \
    -o "$OUT/scratch-$plan.safetensors" > "$OUT/scratch-$plan.log" 2>&1
done
grep -HE "epoch [0-9]|test accuracy|Elapsed" "$OUT"/*.log
