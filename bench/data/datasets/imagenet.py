"""ImageNet-1k (ILSVRC2012): 1000 classes, ImageFolder layout ``<root>/imagenet/{train,val}``, 224 px crops.
It cannot be downloaded automatically; ``val`` is another name of the ``test`` split."""

from __future__ import annotations

from bench.data.folders import FolderDataset
from bench.data.registry import register_dataset


@register_dataset("imagenet")
class ImageNet(FolderDataset):
    num_classes, in_chans, img_size, train_size, test_size = 1000, 3, 224, 1281167, 50000
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    description = "ImageNet-1k (ILSVRC2012), ImageFolder layout <root>/imagenet/{train,val}, 224 px crops"
    split_aliases = {"val": "test"}
    folder_name = "imagenet"
    how_to_get = ("download ILSVRC2012 from https://image-net.org (it cannot be fetched automatically), "
                  "sort val/ into class folders")
