"""proxbench models: the registry of CNNs and vision transformers to binarize.

    >>> import models
    >>> models.list_models("resnet??")
    ['resnet18', 'resnet20', 'resnet32', 'resnet44', 'resnet56']
    >>> models.list_models("resnet20-*")
    ['resnet20-bibench', 'resnet20-bireal', 'resnet20-react']
    >>> net = models.create_model("resnet20", num_classes=10, in_chans=3, img_size=32)

Registered: ``fmnist-cnn``, ``fmnist-mlp`` (``models.small``); ``resnet20/32/44/56`` (``models.cifar_resnet``,
He et al. 2016, option-A shortcuts); ``vgg-small`` (``models.vgg``, LQ-Nets); ``resnet18``
(``models.imagenet``, torchvision); timm ViT/DeiT and ``vit-mini`` (``models.vit``). For binary activations
(W1A1): ``fmnist-cnn-bireal``/``-react`` (``models.small``), ``resnet20/32/44/56-bireal``/``-react`` and
``resnet18-bireal``/``-react`` (``models.bireal``: Bi-Real Net's shortcut around every binarized conv);
BiBench's own CIFAR backbones ``resnet20-bibench``, ``resnet18-bibench`` (``models.bibench``: Hardtanh
activations, full-precision 1×1 downsample shortcuts). ``model_info(name).family``
("cnn" or "vit") matches the binarization policy presets of ``methods``.
"""

from . import bibench as _bibench  # noqa: F401  (each module registers its models)
from . import bireal as _bireal  # noqa: F401
from . import cifar_resnet as _cifar_resnet  # noqa: F401
from . import imagenet as _imagenet  # noqa: F401
from . import small as _small  # noqa: F401
from . import vgg as _vgg  # noqa: F401
from . import vit as _vit  # noqa: F401
from .registry import ModelError, ModelInfo, create_model, list_models, model_info, register_model
from .vit import default_patch_size
from .weights import load_state_dict_resampled, unwrap_checkpoint

__all__ = [
    "ModelError", "ModelInfo", "create_model", "list_models", "model_info", "register_model",
    "default_patch_size", "load_state_dict_resampled", "unwrap_checkpoint",
]
