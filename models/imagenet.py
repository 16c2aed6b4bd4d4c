"""ResNet-18 for ImageNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016), from torchvision.

``torchvision.models.resnet18(weights=None)`` with the classifier sized to ``num_classes`` and the stem to
``in_chans``. For small inputs (``img_size`` < 112, e.g. CIFAR) the default ``stem="auto"`` uses the CIFAR
stem of the binarization literature (IR-Net, RBNN, ReCU): a 3×3 stride-1 conv and no max-pool, instead of
the 7×7 stride-2 conv + max-pool that would shrink a 32×32 image to 8×8 before the first block.
``stem="imagenet"`` or ``stem="cifar"`` forces one. The stem conv stays the first registered layer and
``fc`` the last, so the default binarization policy keeps both in full precision.

``pretrained=True`` loads torchvision's IMAGENET1K_V1 weights from the torch hub cache only (never
downloads). A classifier of another size and a CIFAR stem keep their fresh initialisation; another
``in_chans`` adapts the stem weights with timm's ``adapt_input_conv``.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import ModelError, register_model
from .weights import find_torch_hub_file, missing_weights

STEMS = ("auto", "imagenet", "cifar")


@register_model("resnet18", default_img_size=224, family="cnn", has_pretrained=True)
def resnet18(num_classes, in_chans, img_size, pretrained, stem="auto"):
    """ResNet-18 (He et al. 2016) from torchvision, ~11.2M parameters; CIFAR stem below 112 px."""
    import torchvision

    if stem not in STEMS:
        raise ModelError(f"resnet18: stem must be one of {', '.join(STEMS)}, got {stem!r}")
    if stem == "auto":
        stem = "imagenet" if img_size >= 112 else "cifar"
    if img_size < (32 if stem == "imagenet" else 8):
        raise ModelError(f"resnet18: img_size {img_size} is too small for the {stem} stem")
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False)  # same slot: still registered first
        model.maxpool = nn.Identity()
    elif in_chans != 3:
        model.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if pretrained:
        _load_imagenet_weights(model, in_chans)
    return model


def _load_imagenet_weights(model: nn.Module, in_chans: int) -> None:
    import torchvision
    from timm.models import adapt_input_conv

    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    path = find_torch_hub_file(url)
    if path is None:
        raise missing_weights(
            "resnet18",
            f"{url.rsplit('/', 1)[-1]} under {torch.hub.get_dir()}/checkpoints",
            "python -c \"import torchvision; torchvision.models.resnet18(weights='IMAGENET1K_V1')\"",
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    conv1 = state["conv1.weight"]
    if conv1.shape[2:] == own["conv1.weight"].shape[2:] and conv1.shape[1] != in_chans:
        state["conv1.weight"] = adapt_input_conv(in_chans, conv1)
    state = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(state, strict=False)
