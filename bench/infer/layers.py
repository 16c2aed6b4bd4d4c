"""Engine layers: a deployed W1A1 conv/linear (input quantizer + α·sign(w) weight) computed by ``engine.c``.

Each replaces one input-binarized layer of the deployed PyTorch model (``methods.binarize_inputs`` with the
packed export loaded) and computes what that layer computes, layer hooks included:

* the binary input: bit = 1 where the deployed quantizer gives +1, i.e. x ≥ 0, or x + β ≥ 0 for ReActNet's
  RSign (the same float32 addition as torch's, so the bits are PyTorch's bit for bit), or 1 where DoReFa's
  {0, 1} input (``form="tensorpack"``) is 1, x > 0.5;
* the products: dot = K − 2·popcount(x xor w) over the valid taps, an exact integer (padded taps, which
  are 0 inputs in PyTorch and contribute nothing, are subtracted exactly: ``engine.c``); for {0, 1} inputs
  dot = popcount(w) − popcount(x xor w), exact as well;
* the float part: out = float(dot)·|α_c| (·K_n, XNOR's per-sample mean |x|, computed by the same torch
  function as the deployed quantizer), then + bias and XNOR-Net++'s h ⊗ w by the layer's own torch code.
  PyTorch sums the K products ±α_c in float32 in its own order, so its output is α_c·dot rounded after
  each addition; the engine's is α_c·dot rounded once (the exact value to ½ ulp). The two differ by at
  most the rounding of PyTorch's sum (≤ (K−1)·u·K·|α_c|, u = 2⁻²⁴; in practice a few ulps), and a sign
  downstream can only differ where the value it takes lies within that distance of 0: such flips are
  counted by ``bench.infer.model.compare``, not hidden.

Two layouts, the same integers and float operations: ``engine.c`` (inputs [N][H][W][Cw], 16 output channels
in the vector lanes; every kernel, linear layers, maps narrower than 16) and, with AVX-512, ``lines.c`` for
maps at least 16 wide (zero-padded input lines [N][H+2p][Cw][W+2p], 16 output positions in the lanes: no
gather, no transpose, each channel's results one streamed 64-byte store); outputs of 8 MiB and more ask for
transparent huge pages before they are written (page faults were half the cost of a 51 MB output).

The weight: each deployed weight is ±|α_c| per output channel (``bench.run.export.rebuild``), so the bits
are w > 0 and the scale |w| (a negative learned α, XNOR-Net++'s o or ReCU's a, is the same product with
every bit flipped; α = 0 gives 0 either way). A weight that is not ±a per output channel is refused.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import build

BLOCK = 16  # output channels per weight block (engine.c's CB)
HUGE_OUTPUT = 8 << 20  # outputs of at least 8 MiB ask for transparent huge pages (lines.c's ie_advise_huge)
LINES_MIN_WIDTH = 16  # output maps at least this wide run lines.c's kernel (AVX-512): a tile spans at most 2 rows
PLAIN = {"ste-sign", "approx-sign", "recu-sign", "fda-sign"}


def pack_rows(bits: np.ndarray) -> np.ndarray:
    """bool [..., C] -> uint64 [..., ceil(C/64)]: bit c%64 of word c/64 (padding bits 0)."""
    c = bits.shape[-1]
    words = -(-c // 64)
    padded = np.zeros(bits.shape[:-1] + (words * 64,), dtype=bool)
    padded[..., :c] = bits
    return np.packbits(padded, axis=-1, bitorder="little").view("<u8")


def quantizer_kind(name: str, layer: nn.Module) -> dict:
    """How the engine reads the input quantizer of ``layer``: {threshold, sample_scale, output_hook}; an
    EngineError for one it cannot run."""
    quant = layer.input_quantizer.quantizer
    kind = {"threshold": False, "sample_scale": False, "output_hook": False, "unipolar": False}
    if quant.name == "rsign":
        kind["threshold"] = True
    elif quant.name == "xnor-sign":
        kind["sample_scale"] = bool(quant.scaled)
    elif quant.name == "xnor++-sign":
        kind["output_hook"] = True
    elif quant.name == "dorefa":
        kind["unipolar"] = bool(quant.unipolar)
    elif quant.name not in PLAIN:
        raise build.EngineError(f"layer {name}: the engine does not know input quantizer {quant.name!r}")
    return kind


class EngineLayer(nn.Module):
    """A binary Conv2d (groups 1, dilation 1) or Linear run by the engine; inputs NCHW (any memory format:
    the packing reads the strides) or N×K, outputs contiguous NCHW (or N×Co), as PyTorch's layer."""

    def __init__(self, name: str, layer: nn.Module, isa: int):
        super().__init__()
        self.kind = quantizer_kind(name, layer)
        self.input_quantizer = layer.input_quantizer
        self.isa = isa
        w = layer.weight.detach().float().cpu()
        self.linear = isinstance(layer, nn.Linear)
        if self.linear:
            w = w[:, :, None, None]
            self.stride, self.pad = 1, 0
        else:
            if layer.groups != 1 or tuple(layer.dilation) != (1, 1) or layer.padding_mode != "zeros":
                raise build.EngineError(f"layer {name}: grouped, dilated or non-zero-padded convolutions are not "
                                        "supported by the engine")
            if len(set(layer.stride)) != 1 or isinstance(layer.padding, str) or len(set(layer.padding)) != 1:
                raise build.EngineError(f"layer {name}: the engine needs equal strides and paddings in H and W")
            self.stride, self.pad = int(layer.stride[0]), int(layer.padding[0])
        co, c, kh, kw = w.shape
        scale = w.abs().reshape(co, -1)
        if not torch.equal(scale, scale[:, :1].expand_as(scale)):
            raise build.EngineError(f"layer {name}: its weight is not ±a per output channel (not a deployed "
                                    "binary weight)")
        self.co, self.c, self.kh, self.kw = co, c, kh, kw
        self.register_buffer("scale", scale[:, 0].contiguous())
        bits = (w > 0).permute(0, 2, 3, 1).numpy()  # [Co][KH][KW][C]
        words = pack_rows(bits)  # [Co][KH][KW][Cw]
        self.cw = words.shape[-1]
        blocks = -(-co // BLOCK)
        padded = np.zeros((blocks * BLOCK,) + words.shape[1:], dtype="<u8")
        padded[:co] = words
        blocked = padded.reshape(blocks, BLOCK, -1).transpose(0, 2, 1)  # [blocks][KH·KW·Cw][16]
        self.register_buffer("wt", torch.from_numpy(np.ascontiguousarray(blocked).view(np.int64)))
        self.register_buffer("wpc", torch.from_numpy(bits.sum(-1).reshape(co, kh * kw).astype(np.int32)))
        self.register_buffer("wrow", self.wpc.sum(1, dtype=torch.int32) if self.kind["unipolar"] else None)
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().float()
        if x.dim() != (2 if self.linear else 4) or x.shape[1] != self.c:
            raise build.EngineError(f"engine layer: input of shape {tuple(x.shape)} does not fit {self.c} channels")
        n = x.shape[0]
        h, w = (1, 1) if self.linear else x.shape[2:]
        oh = (h + 2 * self.pad - self.kh) // self.stride + 1
        ow = (w + 2 * self.pad - self.kw) // self.stride + 1
        thr = None
        if self.kind["threshold"]:
            thr = self.input_quantizer.beta.detach().float().reshape(-1).contiguous()
        sample = None
        if self.kind["sample_scale"]:
            sample = x.abs().mean(dim=tuple(range(1, x.dim()))).contiguous()
        out = torch.empty((n, self.co, oh, ow), dtype=torch.float32)
        if out.numel() * 4 >= HUGE_OUTPUT:  # before the first write: 2 MiB pages, far fewer page faults
            build.library().ie_advise_huge(out.data_ptr(), out.numel() * 4)
        if not self.linear and self.isa == 2 and ow >= LINES_MIN_WIDTH:
            rc = self._lines(x, thr, sample, out)
        else:
            rc = self._tiles(x, thr, sample, out)
        if rc != 0:
            raise build.EngineError(f"engine: kernel {build.ISA_NAMES.get(self.isa, self.isa)} refused the layer "
                                    "(a CPU without its instructions, or a receptive field over 4096 words)")
        out = out.reshape(n, self.co) if self.linear else out
        if self.bias is not None:
            out = out + (self.bias if self.linear else self.bias.view(1, -1, 1, 1))
        if self.kind["output_hook"]:
            out = self.input_quantizer.scale_output(out)
        return out

    def _tiles(self, x, thr, sample, out) -> int:
        """engine.c: packed [N][H][W][Cw], 16 output channels in the lanes (every kernel, linear layers)."""
        lib, threads = build.library(), torch.get_num_threads()
        n, oh, ow = out.shape[0], out.shape[2], out.shape[3]
        if self.linear:
            h, w = 1, 1
            x = x.contiguous()
            strides = (x.stride(0), 1, 0)
        else:
            h, w = x.shape[2:]
            if x.stride(2) != w * x.stride(3):  # H and W must merge into one position index
                x = x.contiguous()
            strides = (x.stride(0), x.stride(1), x.stride(3))
        packed = torch.empty((n, h, w, self.cw), dtype=torch.int64)
        lib.ie_pack(x.data_ptr(), None if thr is None else thr.data_ptr(), int(self.kind["unipolar"]), n, h * w,
                    self.c, *strides, self.cw, packed.data_ptr(), self.isa, threads)
        wrow = None if self.wrow is None else self.wrow.data_ptr()
        return lib.ie_conv(packed.data_ptr(), n, h, w, self.cw, self.wt.data_ptr(), self.wpc.data_ptr(), wrow, self.co,
                           self.kh, self.kw, self.stride, self.pad, oh, ow, self.c, self.scale.data_ptr(),
                           None if sample is None else sample.data_ptr(), out.data_ptr(), self.isa, threads)

    def _lines(self, x, thr, sample, out) -> int:
        """lines.c (AVX-512, maps at least 16 wide): padded lines [N][H+2p][Cw][W+2p], 16 positions in the
        lanes, each channel's results one (streamed) store."""
        lib, threads = build.library(), torch.get_num_threads()
        n, h, w = x.shape[0], x.shape[2], x.shape[3]
        oh, ow = out.shape[2], out.shape[3]
        size = lib.ie_lines_size(n, h, w, self.cw, self.pad, self.stride)
        packed = torch.empty(size, dtype=torch.int64)
        rc = lib.ie_pack_lines(x.data_ptr(), None if thr is None else thr.data_ptr(), int(self.kind["unipolar"]), n,
                               self.c, h, w, *x.stride(), self.cw, self.pad, self.stride, packed.data_ptr(), threads)
        if rc != 0:
            return rc
        wrow = None if self.wrow is None else self.wrow.data_ptr()
        return lib.ie_conv_lines(packed.data_ptr(), n, h, w, self.cw, self.wt.data_ptr(), self.wpc.data_ptr(), wrow,
                                 self.co, self.kh, self.kw, self.stride, self.pad, oh, ow, self.c,
                                 self.scale.data_ptr(), None if sample is None else sample.data_ptr(), out.data_ptr(),
                                 threads)
