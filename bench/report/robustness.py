"""BiBench's robustness index, computed when a leaderboard is built from the grid's records.

BiBench (Qin et al., "BiBench: Benchmarking and Analyzing Network Binarization", ICML 2023, Sec. 3,
"Corruption Robustness") measures a binarized model against its full-precision counterpart through the
corruption generalization gap of each task i, G_i = A_i^norm − A_i^corr (clean minus corrupted accuracy), and
reports

    OM_robust = sqrt( (1/N) · Σ_i ( G_i^fp / G_i^bi )² )

(the quadratic mean over the N tasks of the full-precision gap over the binarized gap): 1 when binarization
leaves the gap as it was, above 1 when the binarized model loses less to the corruptions than the fp model,
below 1 when it loses more. BiBench takes CIFAR-10-C as one task (all its corruptions pooled); so does this
harness: one task per record, A^corr = ``final.acc_corrupt`` (the mean over every corrupted set of
``bench.run.corruptions``) and A^norm = ``final.acc``, so R = G^fp / G^bi. A gap of 0 or below (corruptions
that do not hurt) leaves R undefined (None, shown "—").

The fp reference of a record is the done fp record of the same grid with the same dataset, model, seed and
corrupted sets (``config.robustness``); an fp record's own R is 1. Records without one (the W1A1 grid has
no fp cell: its networks are nearly linear in full precision) have no R; their corrupted accuracy is still
in the tables. The fp model's numbers live in its own record, so R is computed here, never stored.
"""

from __future__ import annotations

import math

from bench.report.keys import value_of, value_text


def robustness_index(fp_gaps: list[float], bi_gaps: list[float]) -> float | None:
    """sqrt(mean_i (G_i^fp / G_i^bi)²) over the tasks; None when a binarized gap is ≤ 0 or there is none."""
    if not bi_gaps or len(fp_gaps) != len(bi_gaps) or any(g <= 0 for g in bi_gaps):
        return None
    return math.sqrt(sum((f / b) ** 2 for f, b in zip(fp_gaps, bi_gaps)) / len(bi_gaps))


def gap(final: dict, forward: bool = False) -> float | None:
    """A^norm − A^corr of a record's final metrics (deployed model, or the F(w) model); None without them."""
    clean = final.get("acc_forward" if forward else "acc")
    corrupted = final.get("acc_corrupt_forward" if forward else "acc_corrupt")
    if not isinstance(clean, (int, float)) or not isinstance(corrupted, (int, float)):
        return None
    return float(clean) - float(corrupted)


def _reference_key(record: dict) -> tuple:
    cfg = record["config"]
    return (str(cfg.get("dataset")), str(cfg.get("model")), str(cfg.get("seed")), repr(cfg.get("robustness", True)))


def with_index(records: list[dict]) -> list[dict]:
    """``records`` with ``final.robust`` (and ``final.robust_forward``) added where an fp reference exists:
    copies of the records that get them, the others unchanged."""
    fp = {}
    for record in records:
        if record["config"].get("method") == "fp" and record["status"] == "done" and gap(record["final"]) is not None:
            fp.setdefault(_reference_key(record), record)
    out = []
    for record in records:
        ref = fp.get(_reference_key(record))
        mine = gap(record["final"]) if record["status"] == "done" else None
        if ref is None or mine is None:
            out.append(record)
            continue
        reference = gap(ref["final"])
        final = dict(record["final"])
        final["robust"] = robustness_index([reference], [mine])
        forward = gap(record["final"], forward=True)
        final["robust_forward"] = None if forward is None else robustness_index([reference], [forward])
        out.append({**record, "final": final})
    return out


def corruption_rows(records: list[dict], row_keys, column_of) -> list[tuple]:
    """Per (row, column, corruption kind): the deployed accuracy averaged over severities and done seeds,
    for ``robustness.csv``: ``(row key values..., column, kind, mean, seeds)``, sorted."""
    sums: dict[tuple, list[float]] = {}
    for record in records:
        table = record["final"].get("corruption") if record["status"] == "done" else None
        if not isinstance(table, dict) or not isinstance(table.get("acc"), dict):
            continue
        key = tuple(value_text(value_of(record, k)) for k in row_keys) + (column_of(record),)
        for kind, accs in sorted(table["acc"].items()):
            if accs:
                sums.setdefault(key + (kind,), []).append(sum(accs) / len(accs))
    return [(*key, sum(v) / len(v), len(v)) for key, v in sorted(sums.items())]
