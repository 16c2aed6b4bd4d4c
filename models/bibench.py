"""BiBench's CIFAR backbones (Qin et al., "BiBench: Benchmarking and Analyzing Network Binarization", ICML 2023),
rebuilt from its code (``htqin/BiBench``, paths under ``BiBench/``), piece by piece:

* **backbone class** — ``configs/acc_cifar10/resnet{20,18}_*.py`` set ``type='BiBench_ResNet_CIFAR'``, which
  ``bibench/models/backbones/builder.py`` maps to ``ResNet_CIFAR`` (``backbones/resnet_cifar.py``), a subclass of
  mmcls's ``ResNet`` copied into ``backbones/resnet.py``.
* **stem** — ``resnet_cifar.py`` ``_make_stem_layer``/``forward``: conv3×3 stride 1 (``first_conv_cfg``: None,
  i.e. a full-precision ``nn.Conv2d``), BN, the first activation (``first_act_cfg``), no max-pool. Its width
  is ``stem_channels``, which no config sets: ``resnet.py``'s default, **64, for ResNet-20 too** (``resnet.py``
  ``ResNet.__init__`` passes ``stem_channels`` to ``_make_stem_layer``; ``configs/_base_/models/resnet20.py`` sets
  only ``base_channels=16``). So ResNet-20's first stage goes from 64 to 16 channels.
* **stages** — ``resnet.py`` ``arch_settings``: depth 20 = ``BasicBlock`` × (3, 3, 3), depth 18 = ``BasicBlock`` ×
  (2, 2, 2, 2); widths ``base_channels`` × 2^i (``configs/_base_/models/resnet20.py``: 16, 3 stages, strides
  (1, 2, 2); ``resnet18.py``: 64, 4 stages, strides (1, 2, 2, 2)); the stride is on the first block's first conv
  (``style='pytorch'``).
* **block** — ``resnet.py`` ``BasicBlock.forward`` (``bireal_cut`` is False: ``ResNet`` never passes it on):
  act(BN2(conv2(act(BN1(conv1(x))))) + shortcut(x)); conv1/conv2 3×3, no bias, built from ``conv_cfg``: the
  binarized conv of each ``acc_cifar10`` config (``BiRealConv``, ``ReActConv``, ... from
  ``bibench/models/layers/builder.py``); here plain ``nn.Conv2d``s that ``methods.binarize`` binarizes.
* **activation** — ``act``: ``"hardtanh"`` (default), as every W1A1 ``acc_cifar10`` config sets
  ``first_act_cfg`` and ``act_cfg`` to ``Hardtanh`` (signed, so a sign after it sees the image); ``"relu"`` is
  ``resnet.py``'s default, which ``acc_cifar10/resnet{20,18}_fp32.py`` keep. No parameters either way, so a
  fine-tune may start from a parent built with the other (``same_weights_kwargs``).
* **shortcut** — ``resnet.py`` ``ResLayer``: where the stride is not 1 or the width changes, ``downsample`` =
  conv1×1 (stride of the block) + BN, built from ``downsample_conv_cfg``, which no config sets: a
  full-precision ``nn.Conv2d`` (``avg_down`` False: no pooling). ResNet-20 has three (64→16 stride 1, 16→32,
  32→64), ResNet-18 three (64→128, 128→256, 256→512).
* **head** — ``configs/_base_/models/resnet*.py``: ``GlobalAveragePooling`` neck, ``LinearClsHead`` (a
  full-precision ``nn.Linear``, ``in_channels`` 64 / 512).
* **init** — ``resnet.py`` ``ResNet.__init__`` ``init_cfg``: Kaiming for every ``Conv2d`` (mmcv's defaults:
  normal, fan-out, ReLU gain), BN γ = 1, β = 0; ``zero_init_residual=True``: each block's BN2 γ = 0
  (``init_weights``); mmcls's ``LinearClsHead`` init: normal, std 0.01, bias 0. (BiBench's W1A1 runs start
  from a full-precision checkpoint, ``init_cfg=dict(type='Pretrained', ...)``, so this init only matters for
  the full-precision run.)

So the binarized layers are the blocks' conv1/conv2 (18 in ResNet-20, 16 in ResNet-18) and the full-precision
ones the stem ``conv1`` (registered first), the ``downsample`` 1×1 convs and ``fc`` (registered last): what the
``w1a1`` policy selects (first and last kept, ``*.downsample.*`` excluded).
"""

from __future__ import annotations

import torch
from torch import nn

from .cifar_resnet import init_resnet
from .registry import ModelError, register_model

ACTIVATIONS = {"hardtanh": nn.Hardtanh, "relu": nn.ReLU}


def _act(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ModelError(f"act must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class BiBenchBlock(nn.Module):
    """BiBench's ``BasicBlock``: act(BN2(conv2(act(BN1(conv1(x))))) + downsample(x)), ``downsample`` a
    full-precision conv1×1 + BN where the stride or the width changes (else the identity)."""

    def __init__(self, cin: int, cout: int, stride: int, act: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = _act(act)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + (x if self.downsample is None else self.downsample(x)))


class BiBenchResNet(nn.Module):
    """``ResNet_CIFAR`` of BiBench with its classifier: stem conv3×3(in→``stem``)-BN-act, ``layer1..N`` of
    ``BiBenchBlock``s, global average pooling, ``fc``. See the module docstring for the source of each piece."""

    def __init__(self, blocks: tuple[int, ...], base: int, num_classes: int = 10, in_chans: int = 3,
                 act: str = "hardtanh", stem: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.act = _act(act)
        cin = stem
        self.res_layers = []
        for i, n in enumerate(blocks):
            width = base * 2 ** i
            layer = nn.Sequential(*[BiBenchBlock(cin if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1, act)
                                    for j in range(n)])
            self.add_module(f"layer{i + 1}", layer)
            self.res_layers.append(f"layer{i + 1}")
            cin = width
        self.fc = nn.Linear(cin, num_classes)
        init_resnet(self)  # Kaiming normal fan-out (ReLU gain) for every conv, BN γ = 1, β = 0
        for m in self.modules():
            if isinstance(m, BiBenchBlock):
                nn.init.zeros_(m.bn2.weight)  # zero_init_residual
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        for name in self.res_layers:
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _check(name: str, img_size: int, blocks: tuple[int, ...]) -> None:
    smallest = 2 ** (len(blocks) - 1)  # the last stage's maps are img_size / 2^(stages-1)
    if img_size < max(8, smallest):
        raise ModelError(f"{name}: img_size must be at least {max(8, smallest)}, got {img_size}")


@register_model("resnet20-bibench", default_img_size=32, family="cnn", same_weights_kwargs=("act",))
def resnet20_bibench(num_classes, in_chans, img_size, pretrained, act="hardtanh"):
    """BiBench's CIFAR ResNet-20: 64-wide stem, 3×3 basic blocks of 16-32-64, Hardtanh (act="relu": its fp32
    config), full-precision 1×1 conv + BN downsample shortcuts; its 18 block convs are the binarized ones."""
    _check("resnet20-bibench", img_size, (3, 3, 3))
    return BiBenchResNet((3, 3, 3), 16, num_classes, in_chans, act)


@register_model("resnet18-bibench", default_img_size=32, family="cnn", same_weights_kwargs=("act",))
def resnet18_bibench(num_classes, in_chans, img_size, pretrained, act="hardtanh"):
    """BiBench's CIFAR ResNet-18: 3×3 stride-1 stem, no max-pool, 2×4 basic blocks of 64-128-256-512, Hardtanh
    (act="relu": its fp32 config), full-precision 1×1 conv + BN downsample shortcuts; 16 binarized block convs."""
    _check("resnet18-bibench", img_size, (2, 2, 2, 2))
    return BiBenchResNet((2, 2, 2, 2), 64, num_classes, in_chans, act)
