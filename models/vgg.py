"""VGG-Small, the CIFAR-10 VGG variant of the binarization literature.

Zhang, Yang, Ye & Hua, "LQ-Nets: Learned Quantization for Highly Accurate and Compact Deep Neural
Networks", ECCV 2018 (after Cai et al., HWGQ, CVPR 2017), used as a standard backbone by IR-Net, RBNN,
ReCU and the PC++ experiments. Six 3×3 convolutions 128-128-M-256-256-M-512-512-M, each followed by BN
and ReLU (the max-pool sits between a conv and its BN, as in the LQ-Nets code), then one linear
classifier on the flattened 512×4×4 map (for 32×32 inputs; 512×3×3 for 28×28). About 4.66M parameters.

The first conv is registered first and the classifier last, so the default binarization policy keeps
exactly those two in full precision.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import ModelError, register_model

CFG = (128, 128, "M", 256, 256, "M", 512, 512, "M")


class VGGSmall(nn.Module):
    """conv-(pool)-BN-ReLU ×6 over ``CFG``, flatten, linear classifier."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, img_size: int = 32):
        super().__init__()
        layers, cin, side = [], in_chans, img_size
        for i, v in enumerate(CFG):
            if v == "M":
                continue
            layers.append(nn.Conv2d(cin, v, 3, padding=1, bias=False))
            if i + 1 < len(CFG) and CFG[i + 1] == "M":
                layers.append(nn.MaxPool2d(2))
                side //= 2
            layers += [nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin * side * side, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model("vgg-small", default_img_size=32, family="cnn")
def vgg_small(num_classes, in_chans, img_size, pretrained):
    """VGG-Small (LQ-Nets, ECCV 2018): 128-128-M-256-256-M-512-512-M + linear, ~4.66M parameters."""
    if img_size < 8:
        raise ModelError(f"vgg-small: img_size must be at least 8, got {img_size}")
    return VGGSmall(num_classes, in_chans, img_size)
