"""Small Fashion-MNIST networks: a three-block CNN and a two-hidden-layer MLP.

Both are sized for a 2-core CPU (DESIGN.md §11, §13): ``fmnist-cnn`` trains one Fashion-MNIST epoch
(60k images of 1×28×28) in a few seconds and reaches about 89% test accuracy after it.
"""

from __future__ import annotations

from torch import nn

from .registry import register_model


def conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    """3×3 convolution (no bias, the BN follows), BatchNorm, ReLU."""
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks with 2×2 max-pooling after each, then one linear classifier.

    Channels ``widths`` (default 16-32-64). A 28×28 input becomes 64×3×3 = 576 features; any
    ``img_size`` ≥ 8 works (the classifier is sized from it). The first conv is registered first and
    the classifier last, so the default binarization policy keeps exactly those two in full precision.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28, widths=(16, 32, 64)):
        super().__init__()
        if img_size < 8:
            raise ValueError(f"SmallCNN needs img_size >= 8, got {img_size}")
        layers, cin = [], in_chans
        for w in widths:
            layers += conv_bn_relu(cin, w) + [nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*layers)
        side = img_size
        for _ in widths:
            side //= 2
        self.classifier = nn.Linear(cin * side * side, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class MLP(nn.Module):
    """Flatten, then ``hidden`` Linear-BN-ReLU layers, then a linear classifier (BinaryConnect-style MLP)."""

    def __init__(self, num_classes: int = 10, in_features: int = 784, hidden=(256, 256)):
        super().__init__()
        layers, fin = [nn.Flatten()], in_features
        for h in hidden:
            layers += [nn.Linear(fin, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
            fin = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(fin, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("fmnist-cnn", default_img_size=28, default_in_chans=1, family="cnn")
def fmnist_cnn(num_classes, in_chans, img_size, pretrained, widths=(16, 32, 64)):
    """Small CNN for Fashion-MNIST: 3×(conv3×3-BN-ReLU-maxpool) 16-32-64 + linear, ~29k parameters."""
    return SmallCNN(num_classes, in_chans, img_size, tuple(widths))


@register_model("fmnist-mlp", default_img_size=28, default_in_chans=1, family="cnn")
def fmnist_mlp(num_classes, in_chans, img_size, pretrained, hidden=(256, 256)):
    """MLP for Fashion-MNIST: flatten + 2×(Linear-BN-ReLU) of width 256 + linear, ~270k parameters."""
    return MLP(num_classes, in_chans * img_size * img_size, tuple(hidden))
