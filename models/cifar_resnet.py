"""The CIFAR ResNets of He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, §4.2.

ResNet-(6n+2): a 3×3 conv with 16 filters, three stages of n basic blocks with 16, 32 and 64 filters on
32×32, 16×16 and 8×8 maps (the first block of stages 2 and 3 has stride 2), global average pooling and a
linear classifier. n = 3, 5, 7, 9 gives ResNet-20/32/44/56 (0.27M/0.46M/0.66M/0.85M parameters).

Shortcuts: **option A by default**, as in the paper's CIFAR experiments — the identity, with a stride-2
subsampling and zero-padded extra channels where the shape changes, so it has no parameters and nothing to
binarize. ``shortcut="B"`` uses the 1×1 conv + BN projection instead (a few thousand more parameters;
those convs are binarized by the default policy like any other inner conv).

The stem conv is registered first and the classifier ``fc`` last, so the default binarization policy
(every Conv2d/Linear except the first and the last) keeps exactly those two in full precision. Any input
size ≥ 8 works (28×28 Fashion-MNIST included): the head pools globally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import ModelError, register_model

SHORTCUTS = ("A", "B")


def init_resnet(model: nn.Module) -> None:
    """He et al.'s initialisation: every conv He-normal (fan-out), every BatchNorm γ = 1, β = 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class PadShortcut(nn.Module):
    """Option A: x[:, :, ::stride, ::stride] with the new channels zero-padded (no parameters)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride, self.pad = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.pad)) if self.pad else x


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride == 1 and cin == cout:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(cin, cout, stride)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class CifarResNet(nn.Module):
    """ResNet-(6·depth_n+2) for small images (He et al. 2016, §4.2); see the module docstring."""

    def __init__(self, n: int, num_classes: int = 10, in_chans: int = 3, shortcut: str = "A", widths=(16, 32, 64)):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ModelError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(cin, w, stride, shortcut))
                cin = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(cin, num_classes)
        init_resnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _builder(depth: int):
    n = (depth - 2) // 6

    def build(num_classes, in_chans, img_size, pretrained, shortcut="A"):
        if img_size < 8:
            raise ModelError(f"resnet{depth}: img_size must be at least 8, got {img_size}")
        return CifarResNet(n, num_classes, in_chans, shortcut)

    build.__doc__ = f"ResNet-{depth} for CIFAR (He et al. 2016), 3 stages × {n} basic blocks, 16-32-64 filters, option-A shortcuts."
    build.__name__ = f"resnet{depth}"
    return build


for _depth in (20, 32, 44, 56):
    register_model(f"resnet{_depth}", default_img_size=32, family="cnn")(_builder(_depth))
