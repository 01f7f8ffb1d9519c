#!/bin/sh
# Makes models/cifar10-test-sample/: the first 10 test images of each CIFAR-10 class
# from the JPEG copy, so that `explore simulate` and the main sweep run the shipped
# trained network on real images with no dataset on the machine.
# Usage: sh models/make-cifar10-test-sample.sh [CIFAR10_JPEG_DIR]
set -eu
src=${1:-../shared/datasets/cifar10-jpeg}
out=$(dirname "$0")/cifar10-test-sample
rm -rf "$out"
for class in "$src"/test/*/; do
    name=$(basename "$class")
    mkdir -p "$out/test/$name"
    ls "$class" | sort | head -n 10 | while read -r f; do cp "$class/$f" "$out/test/$name/"; done
done
