"""What a leaderboard cell can hold: ``python -m bench aggregate --metric NAME``.

Each measure reads one number from a record (``final.*`` or its wall time), says whether higher is better,
how it is printed and what the caption says. Accuracy measures (``accuracy = True``) have the drop column
(FP − best binarized) and the compression column; the others have neither. ``noisy`` measures (training
outcomes) bold a winner only outside the seed spread (``bench.report.table``); the counts and sizes are exact.

``ops`` is BOPs/64 + FLOPs, the convention of Bi-Real Net and ReActNet: ``final.ops`` for W1A1 records
(binary weights and inputs: ``bops_w1a1/64 + flops_w1a1``), else ``bops/64 + flops`` (a binary-weight MAC
with a real input counted as one BOP, like an XNOR-popcount: an optimistic bound for weight-only methods).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import UserError

# The run-to-run spread of one config's deployed accuracy on this benchmark, in points: the default grid's BC
# cell finished at 90.54% and 90.36% on two machines (results/README.md, "Reproducing a run"), and the W1A1
# grid's ReActNet at 89.70% and 89.88% with two summation orders (same seed): 0.18 points, rounded up.
SEED_SPREAD = 0.2


@dataclass(frozen=True)
class Measure:
    name: str
    caption: str  # what the numbers are, for the caption and the note under a table
    higher: bool = True
    digits: int = 2
    accuracy: bool = False
    noisy: bool = False
    unit: str = ""

    def value(self, record: dict) -> float | None:
        final = record.get("final") or {}
        if self.name == "time":
            raw = (record.get("provenance") or {}).get("wall_seconds", record.get("wall_seconds"))
            raw = None if not _number(raw) else raw / 60.0
        elif self.name == "ops":
            raw = final.get("ops")
            if not _number(raw) and _number(final.get("bops")) and _number(final.get("flops")):
                raw = final["bops"] / 64 + final["flops"]
            raw = raw / 1e6 if _number(raw) else None
        elif self.name in ("flops", "bops"):
            raw = final.get(self.name)
            raw = raw / 1e6 if _number(raw) else None
        elif self.name == "packed":
            raw = final.get("packed_bytes")
            raw = raw / 1024 if _number(raw) else None
        elif self.name == "memory":
            raw = final.get("peak_memory_mb")
        else:
            raw = final.get(self.name)
        return float(raw) if _number(raw) else None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")


_ALL = (
    Measure("acc", "Top-1 accuracy (%) of the deployed binary model", accuracy=True, noisy=True),
    Measure("acc_forward", "Top-1 accuracy (%) of the F(w) model (the forward quantizer)", accuracy=True, noisy=True),
    Measure("acc_bn", "Top-1 accuracy (%) of the deployed model after BatchNorm re-estimation", accuracy=True,
            noisy=True),
    Measure("acc_corrupt", "Mean top-1 accuracy (%) of the deployed model over the corrupted test sets",
            accuracy=True, noisy=True),
    Measure("acc_corrupt_forward", "Mean top-1 accuracy (%) of the F(w) model over the corrupted test sets",
            accuracy=True, noisy=True),
    Measure("robust", "BiBench's robustness index of the deployed model, the quadratic mean over corruption kinds "
            "of (fp gap) / (gap), gap = clean − corrupted accuracy (1 = as robust as FP, higher = more robust)",
            digits=3, noisy=True),
    Measure("robust_forward", "BiBench's robustness index of the F(w) model", digits=3, noisy=True),
    Measure("ops", "OPs per image (M) = BOPs/64 + FLOPs", higher=False),
    Measure("flops", "FLOPs per image (M), full-precision MACs × 2", higher=False),
    Measure("bops", "BOPs per image (M), binary-weight MACs", higher=False),
    Measure("packed", "Size of the packed deployed model (KiB)", higher=False, digits=1),
    Measure("compression", "Compression: fp32 bytes / packed bytes", digits=1, unit="×"),
    Measure("time", "Training wall time (min)", higher=False, digits=1),
    Measure("memory", "Peak memory (MiB): CUDA tensors on a GPU, resident set on a CPU", higher=False, digits=0),
)
MEASURES = {m.name: m for m in _ALL}


def get_measure(name: str) -> Measure:
    """The measure called ``name``; an unknown name is one line naming the valid ones."""
    if name not in MEASURES:
        raise UserError(f"unknown metric {name!r} (valid: {', '.join(MEASURES)})")
    return MEASURES[name]


def add_aggregate_options(parser) -> None:
    """``aggregate``'s --metric, --transpose and --spread (``bench.cli`` builds the rest)."""
    parser.add_argument("--metric", default="acc", help=f"what a cell holds: one of {', '.join(MEASURES)}")
    parser.add_argument("--transpose", action="store_true", help="methods as rows, the leaderboard's rows as columns")
    parser.add_argument("--spread", type=float, default=SEED_SPREAD,
                        help="one-seed accuracy spread (points): a winner within it of another cell is not bold")
