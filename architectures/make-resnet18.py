"""Writes architectures/resnet18_cifar.toml: ResNet-18 for 32x32 inputs as SNL and
DeepReDuce use it (3x3 stem, no max pool, four stages of two basic blocks).

    python3 architectures/make-resnet18.py > architectures/resnet18_cifar.toml
"""

HEADER = """\
# ResNet-18 for CIFAR (32x32 inputs) as the ReLU-reduction literature uses it (SNL,
# DeepReDuce, AutoReP, Block-ReLU): a 3x3 stem with 64 channels and no max pool, then
# four stages of two basic blocks (64, 128, 256 and 512 channels at 32, 16, 8 and 4
# pixels; the first block of stages 2-4 halves the side with a stride-2 conv and a
# 1x1 stride-2 shortcut), global average pooling and one fully connected layer.
# Each basic block: conv-bn-relu-conv-bn, plus the shortcut, then a ReLU after the
# addition. 557,056 ReLUs: 65,536 in the stem, 4 x 65,536, 4 x 32,768, 4 x 16,384
# and 4 x 8,192 in the stages. Batchnorm folds into its conv for inference.
# Written by architectures/make-resnet18.py.
name = "resnet18-cifar"
description = "ResNet-18 for CIFAR-10 (SNL's variant: 3x3 stem, no max pool)"

[input]
shape = [3, 32, 32]
"""


def layer(name, op, inputs=None, **keys):
    lines = ["[[layers]]", f'name = "{name}"', f'op = "{op}"']
    lines += [f"{k} = {v}" for k, v in keys.items()]
    if inputs:
        lines.append("inputs = [" + ", ".join(f'"{i}"' for i in inputs) + "]")
    return "\n".join(lines)


def conv(name, out, kernel, stride=1, inputs=None):
    keys = {"out_channels": out, "kernel": kernel}
    if stride != 1:
        keys["stride"] = stride
    if kernel // 2:
        keys["padding"] = kernel // 2
    return layer(name, "conv", inputs, **keys)


layers = [conv("conv1", 64, 3), layer("bn1", "batchnorm"), layer("relu1", "relu")]
prev, channels = "relu1", 64
for stage, width in enumerate([64, 128, 256, 512], start=1):
    for block in (1, 2):
        p = f"s{stage}b{block}"
        stride = 2 if stage > 1 and block == 1 else 1
        layers += [
            conv(f"{p}_conv1", width, 3, stride, inputs=[prev]),
            layer(f"{p}_bn1", "batchnorm"),
            layer(f"{p}_relu1", "relu"),
            conv(f"{p}_conv2", width, 3),
            layer(f"{p}_bn2", "batchnorm"),
        ]
        shortcut = prev
        if stride != 1 or channels != width:
            layers += [conv(f"{p}_down", width, 1, stride, inputs=[prev]), layer(f"{p}_down_bn", "batchnorm")]
            shortcut = f"{p}_down_bn"
        layers += [layer(f"{p}_add", "add", inputs=[f"{p}_bn2", shortcut]), layer(f"{p}_relu2", "relu")]
        prev, channels = f"{p}_relu2", width
layers += [layer("pool", "avgpool", kernel=4), layer("flatten", "flatten"), layer("fc", "linear", out_features=10)]
print(HEADER + "\n" + "\n\n".join(layers))
