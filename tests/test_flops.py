"""Operation counts (bench.run.flops) against hand counts."""

from __future__ import annotations

import pytest
from torch import nn

import methods
import models
from bench.run.flops import count_ops


def _tiny():
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, bias=False),  # 2×4×4 outputs × 1·9  = 288 MACs (first layer: fp)
        nn.BatchNorm2d(2), nn.ReLU(),                # elementwise: ignored
        nn.Conv2d(2, 4, 3, stride=2, groups=2),      # 4×1×1 outputs × (2/2)·9 = 36 MACs (binarized)
        nn.Flatten(),
        nn.Linear(4, 5),                             # 5 × 4 = 20 MACs (binarized)
        nn.Linear(5, 3),                             # 3 × 5 = 15 MACs (classifier: fp)
    )


def test_hand_count_full_precision():
    ops = count_ops(_tiny(), (1, 1, 4, 4))
    assert ops == {"flops": 2 * (288 + 36 + 20 + 15), "bops": 0, "macs_fp": 359, "macs_binary": 0}


def test_hand_count_binarized_and_per_sample():
    model = methods.binarize(_tiny(), "bnn++")  # default policy: keep the first conv and the classifier
    ops = count_ops(model, (1, 1, 4, 4))
    assert ops == {"flops": 2 * (288 + 15), "bops": 36 + 20, "macs_fp": 303, "macs_binary": 56}
    assert count_ops(model, (5, 1, 4, 4)) == ops  # counts are per sample
    model.train()
    count_ops(model, (1, 1, 4, 4))
    assert model.training  # the mode is restored


def test_fp_method_counts_no_bops():
    model = methods.binarize(_tiny(), "fp")
    assert count_ops(model, (1, 1, 4, 4))["bops"] == 0


def test_attention_matmuls_counted():
    from timm.layers import Attention

    tokens, dim = 5, 8
    model = nn.Sequential(Attention(dim, num_heads=2))
    ops = count_ops(model, (1, tokens, dim))
    qkv, proj, attn = tokens * dim * 3 * dim, tokens * dim * dim, 2 * tokens * tokens * dim
    assert ops["macs_fp"] == qkv + proj + attn == 1680
    assert ops["flops"] == 2 * 1680


def test_resnet20_counts():
    """ResNet-20 at 32×32: ~40.6M MACs, all but the first conv and the classifier binary."""
    model = methods.binarize(models.create_model("resnet20", num_classes=10), "bc")
    ops = count_ops(model, (1, 3, 32, 32))
    first = 32 * 32 * 16 * 27
    fc = 64 * 10
    assert ops["macs_fp"] == first + fc
    assert ops["macs_binary"] + ops["macs_fp"] == pytest.approx(40.55e6, rel=0.01)


def test_bad_shape():
    with pytest.raises(ValueError, match="batch"):
        count_ops(_tiny(), ())
