#!/usr/bin/env python3
"""Makes models/fashion_mnist-test-sample/: the first 10 test images of each
Fashion-MNIST class as grey PNGs in class folders named 0..9 (the label, so that the
folders' sorted order is the label order), so that `explore simulate` and sweeps run
the shipped trained network on real images with no dataset on the machine.
Standard library only. Usage: python3 models/make-fashion_mnist-test-sample.py [FASHION_MNIST_DIR]"""
import gzip, os, shutil, struct, sys, zlib

src = sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/fashion-mnist"
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist-test-sample")

def png(path, rows):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    header = struct.pack(">IIBBBBB", len(rows[0]), len(rows), 8, 0, 0, 0, 0)  # 8-bit grey
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))

images = gzip.open(os.path.join(src, "t10k-images-idx3-ubyte.gz")).read()
labels = gzip.open(os.path.join(src, "t10k-labels-idx1-ubyte.gz")).read()
n, h, w = struct.unpack(">III", images[4:16])
shutil.rmtree(out, ignore_errors=True)
taken = [0] * 10
for i in range(n):
    k = labels[8 + i]
    if taken[k] == 10:
        continue
    folder = os.path.join(out, "test", str(k))
    os.makedirs(folder, exist_ok=True)
    pixels = images[16 + i * h * w: 16 + (i + 1) * h * w]
    png(os.path.join(folder, "%05d.png" % i), [pixels[r * w:(r + 1) * w] for r in range(h)])
    taken[k] += 1
    if sum(taken) == 100:
        break
