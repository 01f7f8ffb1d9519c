"""PyTorch baseline for `cargo run --release --example train_bench`: the paper's
CIFAR-10 network (Table 2, no batchnorm), SGD with momentum 0.9 and weight decay
5e-4, batch 128, 2 threads. Prints training images per second (median of REPEATS
timings of STEPS steps each) and the peak resident memory, as JSON on one line."""
import json
import resource
import sys
import time

import torch
import torch.nn as nn

steps, repeats, threads = (int(a) for a in sys.argv[1:4])
torch.set_num_threads(threads)
torch.manual_seed(1)


def conv(i, o, k):
    return [nn.Conv2d(i, o, k, padding=k // 2), nn.ReLU()]


net = nn.Sequential(
    *conv(3, 64, 3), *conv(64, 64, 3), nn.AvgPool2d(2),
    *conv(64, 64, 3), *conv(64, 64, 3), nn.AvgPool2d(2),
    *conv(64, 64, 3), *conv(64, 64, 1), *conv(64, 16, 1),
    nn.Flatten(), nn.Linear(1024, 10),
)
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
loss_fn = nn.CrossEntropyLoss()
x = torch.randn(128, 3, 32, 32)
y = torch.randint(0, 10, (128,))


def step():
    opt.zero_grad()
    loss_fn(net(x), y).backward()
    opt.step()


step()
rates = []
for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(steps):
        step()
    rates.append(steps * 128 / (time.perf_counter() - t))
rates.sort()
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"images_per_second": rates[len(rates) // 2], "peak_rss_mib": peak_kib / 1024, "torch": torch.__version__}))
