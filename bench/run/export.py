"""Bit-packed export of the deployed model, and the memory numbers of the leaderboard.

The deployed model computes with ``export(w) = α·sign(w)`` for every binarized weight (``sign(0) = +1``).
``save_packed`` writes exactly that model to one file:

* each binarized weight tensor as **1 bit per weight** (bit 1 = +α, bit 0 = −α), flattened in C order and
  packed 8 per byte with ``numpy.packbits`` (big bit order: the first weight is the most significant bit
  of the first byte); each tensor starts on a byte boundary, so it takes ``ceil(n/8)`` bytes;
* its α as float32: one per output channel (``scale="channel"``), one per tensor (``"tensor"``) or none
  (``"none"``, α = 1);
* every other entry of the state dict (biases, norm weights, BN running statistics, embeddings, position
  and class tokens, full-precision conv/linear weights) as float32 if it is a floating-point tensor, as
  int64 otherwise (``num_batches_tracked`` is **kept**, 8 bytes per BatchNorm layer).

What is stored is ``methods.deployed_model.deployed_entries``; this module only serializes it.
W1A1 methods: the bits and α are what the method's ``export_parts`` says the deployed layer uses (XNOR-Net++'s
learnable Γ and ReCU's learnable scale are the α, so those parameters are not stored twice; ReCU's bits are
sign(w − mean w)); the activation quantizers' learnable tensors (ReActNet's thresholds,
``<layer>.input_quantizer.beta``) are ordinary state-dict entries, stored as float32. Such a file loads into
the model with its deployed input quantizers attached and plain weights (``methods.binarize_inputs``).

Container ("PXBPACK1"), little-endian, no pickle anywhere::

    magic      8 bytes   b"PXBPACK1"
    hlen       uint64    length of the header
    header     hlen      zlib-compressed compact JSON: {"version": 1, "meta": {...}, "sections": {name: [offset, nbytes]},
                         "tensors": [[key, kind, shape, dtype, offset, count, alpha_shape|null, alpha_offset], ...]}
    padding    to a multiple of 8 bytes
    "bits"     uint8     the packed sign bits of every binarized tensor, one after the other
    padding    to 8
    "f32"      float32   α values and full-precision tensors
    padding    to 8
    "i64"      int64     integer tensors

Section offsets are relative to the start of the data area (after the header padding). ``kind`` is ``"bin"``
(a binarized weight), ``"f32"`` or ``"i64"``; ``dtype`` is the tensor's original dtype, restored on load.
The file is written atomically (temp file in the same folder, fsync, rename).

Memory convention (``measure``): ``fp32_bytes`` = 4 bytes per element of every floating-point parameter and
buffer of the state dict + 8 bytes per element of integer buffers (``num_batches_tracked``), i.e. the raw
payload of the same model stored in full precision; ``packed_bytes`` = the size of the file ``save_packed``
actually writes (payload, header and padding); ``compression = fp32_bytes / packed_bytes``.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

import methods
from methods.deploy import rebuild  # noqa: F401  (re-exported for the readers)
from methods.deployed_model import deployed_entries

from bench.atomic import atomic_write

MAGIC = b"PXBPACK1"
VERSION = 1
_ALIGN = 8


class PackingError(ValueError):
    """A file that is not a valid packed model, or a model that cannot be packed."""


# ------------------------------------------------------------------------------------------------------
# what gets stored: the deployed entries of ``methods.deploy`` (bits and α per binarized layer, plain keys)


def payload_bytes(model: nn.Module) -> int:
    """The formula: Σ ceil(n/8) per binarized tensor + 4 × α count + 4 × float elements + 8 × integer elements."""
    total = 0
    for _key, kind, tensor, alpha in deployed_entries(model):
        if kind == "bin":
            total += math.ceil(tensor.numel() / 8) + (0 if alpha is None else 4 * alpha.numel())
        elif kind == "f32":
            total += 4 * tensor.numel()
        else:
            total += 8 * tensor.numel()
    return total


def fp32_bytes(model: nn.Module) -> int:
    """4 bytes per floating-point parameter/buffer element + 8 per integer buffer element (full-precision model)."""
    total = 0
    for value in model.state_dict().values():
        total += 4 * value.numel() if value.is_floating_point() or value.is_complex() else 8 * value.numel()
    return total


# ------------------------------------------------------------------------------------------------------
# the container


def _pad(n: int) -> int:
    return (-n) % _ALIGN


def _encode(model: nn.Module, meta: dict | None) -> bytes:
    bits, f32, i64 = [], [], []
    sizes = {"bits": 0, "f32": 0, "i64": 0}  # in elements (bytes for bits)
    entries = []
    for key, kind, tensor, alpha in deployed_entries(model):
        shape = list(tensor.shape)
        dtype = str(tensor.dtype).removeprefix("torch.") if kind != "bin" else "float32"
        if kind == "bin":
            packed = np.packbits(tensor.numpy().reshape(-1))
            entry = [key, "bin", shape, dtype, sizes["bits"], tensor.numel(), None, None]
            bits.append(packed)
            sizes["bits"] += packed.size
            if alpha is not None:
                entry[6] = list(alpha.shape)
                entry[7] = sizes["f32"]
                f32.append(alpha.numpy().reshape(-1).astype("<f4"))
                sizes["f32"] += alpha.numel()
        elif kind == "f32":
            entry = [key, "f32", shape, dtype, sizes["f32"], tensor.numel(), None, None]
            f32.append(tensor.to(torch.float32).numpy().reshape(-1).astype("<f4"))
            sizes["f32"] += tensor.numel()
        else:
            entry = [key, "i64", shape, dtype, sizes["i64"], tensor.numel(), None, None]
            i64.append(tensor.to(torch.int64).numpy().reshape(-1).astype("<i8"))
            sizes["i64"] += tensor.numel()
        entries.append(entry)

    blobs = {
        "bits": np.concatenate(bits).tobytes() if bits else b"",
        "f32": np.concatenate(f32).tobytes() if f32 else b"",
        "i64": np.concatenate(i64).tobytes() if i64 else b"",
    }
    sections, data, pos = {}, [], 0
    for name in ("bits", "f32", "i64"):
        blob = blobs[name]
        sections[name] = [pos, len(blob)]
        data.append(blob)
        pad = _pad(len(blob)) if name != "i64" else 0
        data.append(b"\0" * pad)
        pos += len(blob) + pad
    header = {"version": VERSION, "meta": meta or {}, "sections": sections, "tensors": entries}
    try:
        text = json.dumps(header, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PackingError(f"meta must be JSON-serialisable: {exc}") from None
    hbytes = zlib.compress(text.encode(), 9)
    head = MAGIC + struct.pack("<Q", len(hbytes)) + hbytes
    return head + b"\0" * _pad(len(head)) + b"".join(data)


def save_packed(model: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> int:
    """Write the deployed ``model`` bit-packed to ``path`` (atomically); returns the number of bytes written.

    ``meta`` is any JSON-serialisable dict (the run config, for instance), returned by ``load_packed``.
    """
    blob = _encode(model, meta)
    atomic_write(path, lambda fh: fh.write(blob))
    return len(blob)


def load_packed(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, meta): a plain (unparametrized) state dict of the deployed model.

    Binarized weights come back as α·(2·bit − 1) (exactly ±α), everything else as stored, in its original dtype.
    """
    raw = Path(path).read_bytes()
    if len(raw) < 16 or raw[:8] != MAGIC:
        raise PackingError(f"{path} is not a proxbench packed model (bad magic)")
    (hlen,) = struct.unpack("<Q", raw[8:16])
    try:
        header = json.loads(zlib.decompress(raw[16 : 16 + hlen]))
    except (zlib.error, ValueError) as exc:
        raise PackingError(f"{path}: corrupt header: {exc}") from None
    if header.get("version") != VERSION:
        raise PackingError(f"{path}: unknown packed format version {header.get('version')!r}")
    start = 16 + hlen + _pad(16 + hlen)

    def section(name: str, dtype: str) -> np.ndarray:
        offset, nbytes = header["sections"][name]
        if start + offset + nbytes > len(raw):
            raise PackingError(f"{path}: truncated file")
        return np.frombuffer(raw, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize, offset=start + offset)

    bits, f32, i64 = section("bits", "u1"), section("f32", "<f4"), section("i64", "<i8")
    state = {}
    for key, kind, shape, dtype, offset, count, alpha_shape, alpha_offset in header["tensors"]:
        torch_dtype = getattr(torch, dtype)
        if kind == "bin":
            nbytes = math.ceil(count / 8)
            flat = np.unpackbits(bits[offset : offset + nbytes], count=count).astype(bool)
            alpha = None
            if alpha_shape is not None:
                n_alpha = math.prod(alpha_shape)
                alpha = torch.from_numpy(f32[alpha_offset : alpha_offset + n_alpha].copy()).reshape(alpha_shape)
            value = rebuild(torch.from_numpy(flat).reshape(shape), alpha)
        elif kind == "f32":
            value = torch.from_numpy(f32[offset : offset + count].copy()).reshape(shape)
        else:
            value = torch.from_numpy(i64[offset : offset + count].copy()).reshape(shape)
        state[key] = value.to(torch_dtype)
    return state, header["meta"]


def load_packed_into(model_fp: nn.Module, path: str | os.PathLike, strict: bool = True) -> dict:
    """Load a packed file into a fresh unbinarized model of the same architecture; returns the meta."""
    if methods.get_method(model_fp) is not None and any(True for _ in methods.binarized_layers(model_fp)):
        raise PackingError("load_packed_into needs an unbinarized model (the packed file holds the deployed weights)")
    state, meta = load_packed(path)
    model_fp.load_state_dict(state, strict=strict)
    return meta


# ------------------------------------------------------------------------------------------------------
# the numbers


def measure(model: nn.Module) -> dict:
    """params, binarized_params, fp32_bytes, packed_bytes (a real file), compression = fp32 / packed."""
    with tempfile.TemporaryDirectory(prefix="proxbench-pack-") as tmp:
        packed = save_packed(model, Path(tmp) / "model.pxb")
    params = sum(p.numel() for p in model.parameters())
    binarized = sum(m.parametrizations.weight.original.numel() for _, m in methods.binarized_layers(model))
    fp = fp32_bytes(model)
    return {
        "params": int(params),
        "binarized_params": int(binarized),
        "fp32_bytes": int(fp),
        "packed_bytes": int(packed),
        "compression": round(fp / packed, 4),
    }
