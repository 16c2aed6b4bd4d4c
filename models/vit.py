"""Vision transformers from timm: ViT (Dosovitskiy et al., ICLR 2021), DeiT (Touvron et al., ICML 2021), and a
CPU-sized ``vit-mini``.

The timm models are created by ``timm.create_model`` with ``img_size``, ``patch_size``, ``in_chans`` and
``num_classes`` adapted to the dataset. ``patch_size`` defaults from the image size (``default_patch_size``):
16 for ImageNet-sized inputs, 4 for 32×32 CIFAR (an 8×8 grid), 7 for 28×28 Fashion-MNIST (a 4×4 grid).

``pretrained=True`` uses timm's weights only if they are in the local Hugging Face cache (see
``models.weights``); timm then resamples the patch embedding to the new patch size, the position
embedding to the new grid (``resample_abs_pos_embed``), sums the stem over RGB for ``in_chans=1``
(``adapt_input_conv``) and drops a classifier of another size.
"""

from __future__ import annotations

from .registry import ModelError, register_model
from .weights import HF_FILENAMES, find_hf_file, hf_cache_dir, missing_weights

TIMM_VITS = {
    # name: description
    "vit_tiny_patch16_224": "ViT-Ti/16 (Dosovitskiy et al. 2021; AugReg weights), 192-d, 12 blocks, 3 heads, ~5.7M params",
    "vit_small_patch16_224": "ViT-S/16 (Dosovitskiy et al. 2021; AugReg weights), 384-d, 12 blocks, 6 heads, ~22M params",
    "deit_tiny_patch16_224": "DeiT-Ti (Touvron et al. 2021), 192-d, 12 blocks, 3 heads, ~5.7M params",
    "deit_small_patch16_224": "DeiT-S (Touvron et al. 2021), 384-d, 12 blocks, 6 heads, ~22M params",
    "deit_base_patch16_224": "DeiT-B (Touvron et al. 2021), 768-d, 12 blocks, 12 heads, ~86M params",
}


def default_patch_size(img_size: int) -> int:
    """16 for inputs of 128 px and more, 7 for MNIST-sized 28/56 px, else 4; ModelError if none divides."""
    for patch in (16,) if img_size >= 128 else (7, 4) if img_size in (28, 56) else (4,):
        if img_size % patch == 0:
            return patch
    raise ModelError(f"no default patch size divides img_size {img_size}; pass patch_size= explicitly")


def _check_patch(name: str, img_size: int, patch_size: int | None) -> int:
    patch_size = default_patch_size(img_size) if patch_size is None else patch_size
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1 or img_size % patch_size:
        raise ModelError(f"{name}: patch_size must be a positive integer dividing img_size {img_size}, got {patch_size!r}")
    return patch_size


def cached_timm_weights(name: str) -> dict:
    """``pretrained_cfg_overlay`` that makes timm load ``name``'s default weights from the local HF cache.

    Raises ModelError at once when they are not cached, naming the repository and file.
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise ModelError(f"{name}: timm has no pretrained weights on the Hugging Face hub for this model")
    filenames = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_FILENAMES
    path = find_hf_file(cfg.hf_hub_id, filenames)
    if path is None:
        files = " or ".join(filenames)
        raise missing_weights(
            name,
            f"{files} of the Hugging Face repo {cfg.hf_hub_id} in {hf_cache_dir()}",
            f"python -c \"import timm; timm.create_model('{name}', pretrained=True)\"",
        )
    return {"file": str(path), "source": "", "custom_load": False}


def _shape(name: str, num_classes, in_chans, img_size, patch_size, drop_path_rate) -> dict:
    """The keyword arguments of timm's ``VisionTransformer`` that every ViT here passes through as given, the
    patch size checked against the image (``_check_patch``)."""
    return {"img_size": img_size, "patch_size": _check_patch(name, img_size, patch_size), "in_chans": in_chans,
            "num_classes": num_classes, "drop_path_rate": drop_path_rate}


def _timm_builder(name: str):
    def build(num_classes, in_chans, img_size, pretrained, patch_size=None, drop_rate=0.0, drop_path_rate=0.0):
        import timm

        extra = {"pretrained_cfg_overlay": cached_timm_weights(name)} if pretrained else {}
        return timm.create_model(name, pretrained=pretrained, drop_rate=drop_rate, **extra,
                                 **_shape(name, num_classes, in_chans, img_size, patch_size, drop_path_rate))

    build.__name__ = name
    build.__doc__ = TIMM_VITS[name]
    return build


for _name, _description in TIMM_VITS.items():
    register_model(_name, default_img_size=224, family="vit", has_pretrained=True)(_timm_builder(_name))


@register_model("vit-mini", default_img_size=28, default_in_chans=1, family="vit")
def vit_mini(num_classes, in_chans, img_size, pretrained, patch_size=None, embed_dim=128, depth=6, num_heads=4,
             mlp_ratio=4.0, drop_path_rate=0.0):
    """A CPU-sized ViT (timm VisionTransformer): 128-d, 6 blocks, 4 heads, patch 7 on 28 px / 4 on 32 px, ~1.2M params.

    Trains on Fashion-MNIST at several hundred images/s on a 2-core CPU (16 tokens + the class token).
    """
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                             **_shape("vit-mini", num_classes, in_chans, img_size, patch_size, drop_path_rate))
