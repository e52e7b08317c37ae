#!/usr/bin/python3
"""Export benchmark models (random weights, deterministic) for the engine benchmarks.

    /usr/bin/python3 tools/make_bench_models.py [--out build/bench_models] [--save-pt]

Writes DIR/resnet18_cifar.onnx (opset 13, input "input" N x 3 x 32 x 32,
output "logits" N x 10, dynamic batch axis "batch"; eval mode, BatchNorm
folded into the convolutions by the exporter) and DIR/resnet18_cifar_ref.npz
(x: 4 x 3 x 32 x 32 float32 in [0,1], logits: PyTorch eval-mode output).
The .onnx is ~45 MB: it is generated, not committed.

Benchmarks re-create the exact same PyTorch module without any file:
    sys.path.insert(0, "tools")
    from make_bench_models import build_resnet18_cifar
    model = build_resnet18_cifar()          # eval mode, seed 0, same weights every time
and the trained fixture models with
    from make_fixtures import load_model
    model = load_model("mnist_cnn")          # or "fashion_resnet", from tests/fixtures/*.pt

build_resnet18_cifar() is a self-contained copy of torchvision 0.14's
resnet18(num_classes=10) (same module names, construction order and
initialisation, so the same state_dict keys and, for the same seed, the same
weights; torchvision is not needed), followed by the usual CIFAR adaptation:
    model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn as nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision.models.ResNet (BasicBlock only), same structure and init."""

    def __init__(self, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(BasicBlock(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def build_resnet18_cifar(seed=0):
    """ResNet-18 for 3x32x32 inputs, 10 classes, random weights from `seed`, eval mode.

    Deterministic: the same seed gives bit-identical weights on every call.
    Restores the global torch RNG state afterwards.
    """
    state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = ResNet([2, 2, 2, 2], num_classes=10)
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    finally:
        torch.set_rng_state(state)
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description="export benchmark ONNX models")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench_models"))
    ap.add_argument("--save-pt", action="store_true", help="also save the state_dict (~45 MB)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)
    import onnx

    model = build_resnet18_cifar()
    path = os.path.join(args.out, "resnet18_cifar.onnx")
    torch.onnx.export(model, torch.zeros(1, 3, 32, 32), path, opset_version=13,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    m = onnx.load(path)
    onnx.checker.check_model(m)
    x = torch.from_numpy(np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32))
    with torch.no_grad():
        z = model(x)
    np.savez(os.path.join(args.out, "resnet18_cifar_ref.npz"), x=x.numpy(), logits=z.numpy())
    if args.save_pt:
        torch.save(model.state_dict(), os.path.join(args.out, "resnet18_cifar.pt"))
    ops = sorted({n.op_type for n in m.graph.node})
    nparam = sum(p.numel() for p in model.parameters())
    print("%s: %.1f MB, %d parameters, %d nodes, ops: %s"
          % (path, os.path.getsize(path) / 1e6, nparam, len(m.graph.node), " ".join(ops)))


if __name__ == "__main__":
    main()
