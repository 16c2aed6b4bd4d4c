"""All binarized weights of a model quantized together, once per forward (``methods.fuse``).

The per-layer path (``Method.forward`` on each layer's latent) launches α, F and B' for every layer: a
handful of small kernels per layer (18 binarized layers in a ResNet-20), which on a GPU costs launch latency
rather than arithmetic. The fused path computes the same map for every layer at once, for methods whose F and B'
act elementwise on x = w/α (declared: ``Traits.elementwise``; ``Method.fusable`` adds: θ = α·F(w/α), not θ = w,
and no per-layer learnable tensors, ``Traits.learned``):

    θ_i = α_i·F(w_i/α_i)          in the forward,
    grad_{w_i} = grad_{θ_i}·B'(w_i/α_i)   in the backward, α_i detached (mean |w_i| per tensor, per output
                                          channel, or 1: ``scale``).

Per group of latents with one device and dtype: the latents are concatenated into one flat tensor w (one
``cat``), α_i is computed per layer (``torch._foreach_abs``, then per layer the same ``sum`` and ``div_`` as
``methods.autograd.channel_scale``, then ``torch._foreach_clamp_min_``) and spread over the flat tensor (one
``cat`` and one ``repeat_interleave``), and the per-layer path's autograd.Function
(``methods.autograd.scaled_quantize``) computes x = w/α, θ = α·F(x) on the flat tensor and grad·B'(x) in its
backward. Each layer's weight is a view of the flat θ
(one ``split``), with its latent's strides: a latent enters the flat tensor in memory order (a channels_last
conv weight as (out, kh, kw, in), ``memory_order``), so θ is channels_last where w is. The reductions of α
stay per layer: a flat segment-sum adds in another order and differs in
the last bit, and on CUDA a per-layer ``div_`` by an integer is a multiplication by its reciprocal, which a
foreach division does not reproduce; abs and clamp are exact, so their foreach forms give the same bits.

Bit for bit the per-layer results: every op on the flat tensor is elementwise, so each element sees the
same arithmetic. One exception on CPU: ATen evaluates a transcendental op (the sigmoid of SignSwish, bnn+
and bnn++) with vector code in blocks and the leftover elements of a tensor (or of a thread's chunk) with
scalar code, which can differ in the last bit. Each layer's segment therefore starts at a multiple of
``BLOCK`` elements (zero padding between segments, α = 1 there), the flat tensor is padded so that every
thread's chunk is a multiple of ``BLOCK``, and a layer whose own per-layer evaluation has a scalar tail
(``vector_clean`` false: numel not a multiple of ``BLOCK``, or an uneven thread split) keeps the per-layer
path. On CUDA every element runs the same code, and every layer is fused.

Lifetime: a forward pre-hook on the root model arms the cache, the first binarized layer that reads its
weight computes all of them, the other layers read their views, and a forward hook (``always_call``) drops
them. Outside a forward of the root model (a layer called alone, ``layer.weight`` read directly), under
``torch.compile`` (which traces the per-layer ``straight_through`` and fuses elementwise ops itself) and in
the deployed model (``methods.deployed``: ``export``) the per-layer path runs. The optimizer, the step hooks,
``latent_weights`` and export see the per-layer latents as before.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .autograd import scaled_quantize
from .method import Method

BLOCK = 64  # elements: a multiple of ATen's CPU vector block (2 vectors of 16 floats with AVX-512)
GRAIN = 32768  # ATen's CPU grain size (at::internal::GRAIN_SIZE): below it an elementwise op is serial


def _ceil_to(n: int, block: int) -> int:
    return -(-n // block) * block


def _tasks(n: int) -> int:
    """The number of chunks ATen's CPU elementwise ops split n elements into."""
    return 1 if n < GRAIN else min(torch.get_num_threads(), -(-n // GRAIN))


def vector_clean(n: int, device: torch.device) -> bool:
    """Does an elementwise op on a tensor of n elements on ``device`` run without scalar tail code (every
    thread's chunk a multiple of ``BLOCK``)? Always on CUDA (no vector/scalar split there)."""
    if device.type != "cpu":
        return True
    tasks = _tasks(n)
    return n % BLOCK == 0 and (-(-n // tasks)) % BLOCK == 0


def padded_total(n: int, device: torch.device) -> int:
    """n rounded up so that every CPU thread's chunk of the flat tensor is a multiple of ``BLOCK``."""
    total = _ceil_to(n, BLOCK)
    if device.type != "cpu":
        return total
    while not vector_clean(total, device):
        total = _ceil_to(total + 1, BLOCK * _tasks(total))
    return total


def memory_order(w: Tensor, scale: str) -> tuple[int, ...] | None:
    """The permutation of w's dims that lists its elements in memory order (w.permute(order) contiguous: the
    identity for a contiguous latent, (0, 2, 3, 1) for a channels_last conv weight), or None when there is
    none or, with ``scale = "channel"``, when the output channels (dim 0) are not outermost in memory."""
    order = tuple(sorted(range(w.dim()), key=lambda d: (-w.stride(d), d)))
    if not w.permute(order).is_contiguous() or (scale == "channel" and w.dim() > 1 and order[0] != 0):
        return None
    return order


def layer_alphas(latents: list[Tensor], scale: str) -> list[Tensor]:
    """α of each latent, bit for bit ``channel_scale(w, scale)`` (``scale`` "tensor" or "channel"): abs and
    clamp as foreach ops (exact), the sum and the division by the count per layer, as there."""
    with torch.no_grad():
        absolute = torch._foreach_abs([w.detach() for w in latents])
        alphas = []
        for a in absolute:
            if scale == "tensor" or a.dim() < 2:
                alphas.append(a.sum().div_(a.numel()))
            else:
                alphas.append(a.sum(dim=tuple(range(1, a.dim())), keepdim=True).div_(a.numel() // a.shape[0]))
        torch._foreach_clamp_min_(alphas, 1e-12)
        return alphas


class _Layout:
    """Where each latent of a group lies in the flat tensor: segment sizes for ``cat``/``split`` (a latent,
    then its padding), and the repeats that spread the per-layer (or per-channel) α over the flat tensor."""

    def __init__(self, latents: list[Tensor], scale: str, device: torch.device):
        self.orders = [memory_order(w, scale) for w in latents]
        self.inverse = [tuple(sorted(range(len(o)), key=o.__getitem__)) for o in self.orders]
        self.shapes = [w.permute(o).shape for w, o in zip(latents, self.orders)]
        sizes = [w.numel() for w in latents]
        self.pads = [_ceil_to(n, BLOCK) - n for n in sizes]
        self.pads[-1] += padded_total(sum(sizes) + sum(self.pads), device) - sum(sizes) - sum(self.pads)
        self.total = sum(sizes) + sum(self.pads)
        self.splits = [s for n, p in zip(sizes, self.pads) for s in (n, p)]
        repeats = []
        for w, pad in zip(latents, self.pads):
            channels = 1 if scale == "tensor" or w.dim() < 2 else w.shape[0]
            repeats += [w.numel() // channels] * channels + ([pad] if pad else [])
        self.repeats = torch.tensor(repeats, device=device)
        self.zeros = torch.zeros(max(self.pads), device=device, dtype=latents[0].dtype)
        self.one = torch.ones(1, device=device, dtype=latents[0].dtype)

    def flat(self, parts: list[Tensor], fill: Tensor, order: bool = True) -> Tensor:
        """The flat tensor of ``parts`` (one per latent, each in memory order when ``order``) with ``fill`` (a
        1-element or a long enough tensor) in the padding."""
        pieces = []
        for part, pad, dims in zip(parts, self.pads, self.orders):
            pieces.append((part.permute(dims) if order else part).reshape(-1))
            if pad:
                pieces.append(fill[:pad] if fill.numel() > 1 else fill)
        return torch.cat(pieces)

    def spread(self, alphas: list[Tensor]) -> Tensor:
        """α of every element of the flat tensor (1 in the padding)."""
        return torch.repeat_interleave(self.flat(alphas, self.one, order=False), self.repeats, output_size=self.total)

    def split(self, theta: Tensor) -> list[Tensor]:
        """Each layer's view of the flat θ, with its latent's shape and strides."""
        parts = theta.split(self.splits)
        return [parts[2 * i].view(shape).permute(inverse)
                for i, (shape, inverse) in enumerate(zip(self.shapes, self.inverse))]


class FusedWeights:
    """The fused quantization of a model's binarized layers (see the module docstring).

    ``layers``: the binarized modules (their ``parametrizations.weight[0]`` is the ``BinarizedWeight``);
    ``weight(i)`` is the θ of layer i in the current forward. ``remove()`` detaches it."""

    def __init__(self, model: nn.Module, method: Method, layers: list[nn.Module]):
        self.method = method
        self.layers = list(layers)
        self.active = False
        self.thetas: list[Tensor] | None = None
        self._plans: dict[tuple, tuple[list[tuple[list[int], _Layout]], list[int]]] = {}
        for index, layer in enumerate(self.layers):
            layer.parametrizations.weight[0].fused = self
            layer.parametrizations.weight[0].fused_index = index
        self._handles = [model.register_forward_pre_hook(self._begin),
                         model.register_forward_hook(self._end, always_call=True)]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        for layer in self.layers:
            layer.parametrizations.weight[0].fused = None
        self.active, self.thetas = False, None

    def _begin(self, module, args) -> None:
        if torch.compiler.is_compiling():
            return
        self.active, self.thetas = True, None

    def _end(self, module, args, output) -> None:
        if torch.compiler.is_compiling():
            return
        self.active, self.thetas = False, None

    def weight(self, index: int) -> Tensor:
        """θ of layer ``index``: all layers' θ are computed at the first call of a forward."""
        if self.thetas is None:
            self.thetas = self.compute()
        return self.thetas[index]

    def compute(self) -> list[Tensor]:
        """θ of every layer: each group of latents with one device and dtype as one flat tensor (per layer:
        a layer ``vector_clean`` rejects, or one without a ``memory_order``)."""
        latents = [layer.parametrizations.weight.original for layer in self.layers]
        thetas: list[Tensor | None] = [None] * len(latents)
        groups, alone = self._plan(latents)
        for i in alone:
            thetas[i] = self.method.forward(latents[i])
        for indices, layout in groups:
            for i, theta in zip(indices, self.compute_group([latents[i] for i in indices], layout)):
                thetas[i] = theta
        return thetas

    def _plan(self, latents: list[Tensor]) -> tuple[list[tuple[list[int], _Layout]], list[int]]:
        """The latents fused per (device, dtype), each group with its ``_Layout``, and those quantized alone;
        made once per set of shapes, strides, devices, dtypes and CPU threads (all that ``vector_clean``,
        ``memory_order`` and the layout read)."""
        scale = self.method.scale
        key = (scale, torch.get_num_threads(), tuple((w.device, w.dtype, tuple(w.shape), w.stride()) for w in latents))
        plan = self._plans.get(key)
        if plan is None:
            by_device: dict[tuple, list[int]] = {}
            alone = []
            for i, w in enumerate(latents):
                if vector_clean(w.numel(), w.device) and memory_order(w, scale) is not None:
                    by_device.setdefault((w.device, w.dtype), []).append(i)
                else:
                    alone.append(i)
            groups = [(indices, _Layout([latents[i] for i in indices], scale, device))
                      for (device, _), indices in by_device.items()]
            plan = self._plans[key] = (groups, alone)
        return plan

    def compute_group(self, latents: list[Tensor], layout: _Layout) -> list[Tensor]:
        """θ of latents of one device and dtype, through one ``scaled_quantize`` on their flat tensor."""
        scale = self.method.scale
        flat_w = layout.flat(latents, layout.zeros)
        alpha = None if scale == "none" else layout.spread(layer_alphas(latents, scale))
        return layout.split(scaled_quantize(flat_w, alpha, self.method))
