"""Operation counts of a (binarized) model: FLOPs of the full-precision part, BOPs of the binary part.

One forward pass of a zero tensor with forward hooks on every convolution and linear layer (and on timm's
``Attention`` blocks, whose two activation×activation matrix products are not module calls). Counts are
**per sample**: ``input_shape`` includes the batch dimension (``(1, 3, 32, 32)``) and totals are divided by it.

Conventions:

* a MAC is one multiply-accumulate of a convolution/linear layer: ``out_elements × in_channels/groups ×
  kernel elements`` for a convolution, ``out_elements × in_features`` for a linear layer;
* MACs of a layer whose weight is binarized (``methods.binarized_layers``) are **binary-weight MACs**:
  ``macs_binary``; ``bops = macs_binary`` (1 BOP per binary-weight MAC; the activations stay full
  precision in this benchmark, so a BOP here is a sign-conditioned accumulate, not an XNOR-popcount);
* every other MAC is full precision (``macs_fp``), and ``flops = 2 × macs_fp`` (a multiply and an add),
  including attention's ``q·kᵀ`` and ``attn·v`` (``2 × tokens² × dim`` MACs per timm ``Attention``);
* biases, normalisation, activations, pooling, softmax and residual additions are **ignored** (elementwise,
  small next to the MACs), as in fvcore/ptflops-style MAC counts.

W1A1 models (a method with an activation quantizer, ``methods.input_binarized_layers``) get four more keys;
weight-only models keep exactly the four above, with the same meaning:

* ``macs_w1a1``: MACs of layers whose weights **and** inputs are binary (an XNOR/AND-popcount each);
  ``bops_w1a1 = macs_w1a1`` (1 BOP per such MAC);
* ``flops_w1a1 = 2 × (every other MAC)``: the full-precision MACs and the binary-weight MACs whose input is
  real (a sign-conditioned accumulate of a real number is counted as floating-point work here);
* ``ops = bops_w1a1 / 64 + flops_w1a1`` (Bi-Real Net's and ReActNet's OPs, a 64-bit popcount doing 64
  BOPs; note those papers count one FLOP per multiply-accumulate, i.e. their OPs = bops_w1a1/64 + flops_w1a1/2).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

import methods

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _is_attention(module: nn.Module) -> bool:
    """timm's ``Attention`` (and look-alikes): a ``qkv`` Linear and ``num_heads``."""
    return isinstance(getattr(module, "qkv", None), nn.Linear) and hasattr(module, "num_heads")


def count_ops(model: nn.Module, input_shape: Sequence[int]) -> dict:
    """{flops, bops, macs_fp, macs_binary} per sample for one forward of ``torch.zeros(input_shape)``."""
    shape = tuple(int(s) for s in input_shape)
    if not shape or shape[0] < 1:
        raise ValueError(f"input_shape must include a positive batch dimension, got {tuple(input_shape)}")
    binarized = {id(m) for _, m in methods.binarized_layers(model)}
    binary_inputs = {id(m) for _, m in methods.input_binarized_layers(model)} & binarized
    totals = {"fp": 0, "binary": 0, "w1a1": 0}

    def layer_hook(module, inputs, output):
        if isinstance(module, nn.Linear):
            macs = output.numel() * module.in_features
        else:
            k = 1
            for s in module.kernel_size:
                k *= int(s)
            macs = output.numel() * (module.in_channels // module.groups) * k
        totals["binary" if id(module) in binarized else "fp"] += macs
        if id(module) in binary_inputs:
            totals["w1a1"] += macs

    def attention_hook(module, inputs, output):
        x = inputs[0]
        tokens = x.shape[-2]
        batch = x.numel() // (x.shape[-2] * x.shape[-1])
        dim = module.qkv.out_features // 3
        totals["fp"] += 2 * batch * tokens * tokens * dim

    handles = []
    for module in model.modules():
        if isinstance(module, _CONV + (nn.Linear,)):
            handles.append(module.register_forward_hook(layer_hook))
        elif _is_attention(module):
            handles.append(module.register_forward_hook(attention_hook))
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        model.eval()
        with torch.no_grad():
            model(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    batch = shape[0]
    macs_fp, macs_binary = totals["fp"] // batch, totals["binary"] // batch
    out = {"flops": 2 * macs_fp, "bops": macs_binary, "macs_fp": macs_fp, "macs_binary": macs_binary}
    if binary_inputs:
        macs_w1a1 = totals["w1a1"] // batch
        flops_w1a1 = 2 * (macs_fp + macs_binary - macs_w1a1)
        out.update({"macs_w1a1": macs_w1a1, "bops_w1a1": macs_w1a1, "flops_w1a1": flops_w1a1,
                    "ops": macs_w1a1 / 64 + flops_w1a1})
    return out
