"""The built-in datasets, one registered class each (importing this package registers them, in the order
``python -m bench datasets`` lists them: the default, fashion-mnist, first)."""

from bench.data.datasets import fashion_mnist  # noqa: F401  (the default dataset: registered first)
from bench.data.datasets import cifar, imagenet, synthetic  # noqa: F401
