"""Residual networks built for binary activations (W1A1): a real-valued shortcut around every binarized conv.

A binarized convolution that also binarizes its input computes with sign(x). Two things make an ordinary CNN
unfit for that:

* a ReLU in front of the convolution: its output is ≥ 0, and sign(0) = +1, so the binary input is the
  constant +1 and the convolution sees nothing;
* one shortcut per two convolutions: the real-valued information is lost at every sign in between.

Bi-Real Net (Liu, Wu, Luo, Yang, Liu & Cheng, ECCV 2018) therefore wraps *each* 3×3 convolution in its own
shortcut, out = BN(conv(x)) + x, with no ReLU in front of any binarized convolution; ReActNet (Liu, Shen,
Savvides & Cheng, ECCV 2020) adds RPReLU(x) = PReLU(x − γ) + ζ after each such block. BiBench (Qin et al.,
ICML 2023) evaluates its W1A1 methods on networks of this kind. ``BinaryBlock`` is that unit and
``BiRealResNet`` the ResNets built from it:

* ``resnet20/32/44/56-bireal`` and ``-react``: the CIFAR ResNets of He et al. (16-32-64 filters, 3 stages of
  n basic blocks), every basic block's two convolutions each a ``BinaryBlock``;
* ``resnet18-bireal`` and ``-react``: ResNet-18 (64-128-256-512, 2 basic blocks per stage), i.e. Bi-Real Net
  18; below 112 px the CIFAR stem (3×3 stride-1 conv, no max-pool), as ``resnet18``.

Where a block changes the resolution or the width, its shortcut is by default Bi-Real Net's downsampling
shortcut (``shortcut="conv"``, the form of Bi-Real's official code): 2×2 average pooling (stride 2, where the
block has stride 2), then a full-precision 1×1 convolution and BN, registered as ``<block>.downsample``.
``shortcut="repeat"`` keeps the earlier parameter-free form: the pooled map with its channels repeated to the
new width (ReActNet's reduction blocks concatenate two copies). The full-precision layers are the stem conv,
registered first, the classifier ``fc``, registered last, and the 1×1 ``downsample`` convs: exactly the
layers the ``w1a1`` policy keeps (it excludes ``*.downsample.*``). The stem is conv-BN with no ReLU, so the
first binary block already sees signed inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from .cifar_resnet import init_resnet
from .registry import ModelError, register_model


class RPReLU(nn.Module):
    """ReActNet's RPReLU: PReLU(x − γ) + ζ with γ, ζ and the negative slope learnable per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.shift_in = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.prelu = nn.PReLU(channels, init=0.25)
        self.shift_out = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return self.prelu(x - self.shift_in) + self.shift_out


SHORTCUTS = ("conv", "repeat")


class BinaryBlock(nn.Module):
    """BN(conv3×3(x)) + shortcut(x), then RPReLU when ``react`` (Bi-Real Net's real-valued shortcut around one
    binary convolution). The shortcut is x where the shape stays; where ``stride`` is 2 or the width grows:
    ``shortcut="conv"``: ``downsample`` = 2×2 average pooling (stride 2 only), a full-precision 1×1 conv and BN
    (Bi-Real Net's code); ``"repeat"``: x 2×2-average-pooled (stride 2) with its channels repeated (``cout``
    a multiple of ``cin``; no parameters). A ``"repeat"`` block builds exactly the modules it always had."""

    def __init__(self, cin: int, cout: int, react: bool, stride: int = 1, shortcut: str = "conv"):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ModelError(f"BinaryBlock: shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")
        if shortcut == "repeat" and cout % cin:
            raise ModelError(f"BinaryBlock: the output width {cout} must be a multiple of the input width {cin}")
        if stride not in (1, 2):
            raise ModelError(f"BinaryBlock: stride must be 1 or 2, got {stride}")
        self.conv = nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        # ceil_mode: the pooled map has the strided convolution's size, ceil(H/2), for odd H too
        pool = nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False) if stride == 2 else nn.Identity()
        self.repeat = 1
        if shortcut == "conv" and (stride != 1 or cin != cout):
            self.pool = nn.Identity()
            self.downsample = nn.Sequential(pool, nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        else:
            self.pool, self.downsample = pool, None
            self.repeat = cout // cin
        self.act = RPReLU(cout) if react else nn.Identity()

    def forward(self, x):
        if self.downsample is not None:
            shortcut = self.downsample(x)
        else:
            shortcut = self.pool(x)
            if self.repeat > 1:
                shortcut = torch.cat([shortcut] * self.repeat, dim=1)
        return self.act(self.bn(self.conv(x)) + shortcut)


class BiRealResNet(nn.Module):
    """Stem (conv-BN, plus a 3×3/2 max-pool after a 7×7/2 conv for the ImageNet stem), then per stage
    ``2·blocks`` ``BinaryBlock``s (a basic block's two convolutions; the first of stages 2+ has stride 2),
    global average pooling and the linear classifier ``fc``."""

    def __init__(self, blocks: tuple[int, ...], widths: tuple[int, ...], num_classes: int = 10,
                 in_chans: int = 3, react: bool = False, imagenet_stem: bool = False, shortcut: str = "conv"):
        super().__init__()
        if imagenet_stem:
            self.conv1 = nn.Conv2d(in_chans, widths[0], 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, cin = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            units = []
            for j in range(2 * n):
                units.append(BinaryBlock(cin, w, react, stride=2 if (i > 0 and j == 0) else 1, shortcut=shortcut))
                cin = w
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)
        init_resnet(self)

    def forward(self, x):
        x = self.stages(self.maxpool(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


REACT_NOTE = {False: "", True: " and RPReLU after each (ReActNet)"}  # what a ReActNet variant adds


def _described(build, name: str, doc: str):
    """``build`` with its ``__name__`` and the docstring ``register_model`` shows as its description."""
    build.__name__, build.__doc__ = name, doc
    return build


def _cifar_builder(depth: int, react: bool):
    n = (depth - 2) // 6
    variant = "react" if react else "bireal"

    def build(num_classes, in_chans, img_size, pretrained, shortcut="conv"):
        if img_size < 8:
            raise ModelError(f"resnet{depth}-{variant}: img_size must be at least 8, got {img_size}")
        return BiRealResNet((n, n, n), (16, 32, 64), num_classes, in_chans, react, shortcut=shortcut)

    return _described(build, f"resnet{depth}_{variant}",
                      f"ResNet-{depth} for binary activations: a real-valued shortcut around each of its {6 * n} "
                      f"binarized convs (Bi-Real Net){REACT_NOTE[react]}, no ReLU; shortcut=\"conv\" (default: "
                      f"avg-pool + 1×1 conv + BN where the shape changes) or \"repeat\" (parameter-free).")


def _resnet18_builder(react: bool):
    variant = "react" if react else "bireal"

    def build(num_classes, in_chans, img_size, pretrained, stem="auto", shortcut="conv"):
        if stem not in ("auto", "imagenet", "cifar"):
            raise ModelError(f"resnet18-{variant}: stem must be one of auto, imagenet, cifar, got {stem!r}")
        imagenet_stem = stem == "imagenet" or (stem == "auto" and img_size >= 112)
        if img_size < (32 if imagenet_stem else 8):
            raise ModelError(f"resnet18-{variant}: img_size {img_size} is too small for its stem")
        return BiRealResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes, in_chans, react, imagenet_stem,
                            shortcut)

    return _described(build, f"resnet18_{variant}",
                      f"ResNet-18 for binary activations (Bi-Real Net 18): a real-valued shortcut around each of "
                      f"its 16 binarized convs{REACT_NOTE[react]}; CIFAR stem below 112 px; shortcut=\"conv\" "
                      f"(default) or \"repeat\", as the CIFAR ones.")


for _react in (False, True):
    for _depth in (20, 32, 44, 56):
        register_model(f"resnet{_depth}-{'react' if _react else 'bireal'}", default_img_size=32,
                       family="cnn")(_cifar_builder(_depth, _react))
    register_model(f"resnet18-{'react' if _react else 'bireal'}", default_img_size=224,
                   family="cnn")(_resnet18_builder(_react))
