"""BiBench's robustness index, computed when a leaderboard is built from the grid's records.

BiBench (Qin et al., "BiBench: Benchmarking and Analyzing Network Binarization", ICML 2023, track
"Corruption Robustness") evaluates on CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019): every corruption of the
release, each file holding severities 1–5 of the test split, so a corruption's accuracy is the mean over its
five severities. For the i-th of the C corruptions it takes the corruption generalization gap

    G_i = A_i^norm − A_i^corr      (clean minus corrupted top-1, %)

of the full-precision model (G_i) and of the binarized one (G_i^bi), and reports

    OM_robust = sqrt( (1/C) · Σ_{i=1}^{C} E²( G_i / G_i^bi ) )

where E(·) is the mean over architectures: a quadratic mean over the corruptions of the fp gap over the
binarized gap. 1 when binarization leaves every gap as it was, above 1 when the binarized model loses less to
the corruptions than the fp model, below 1 when it loses more. The official code (github.com/htqin/BiBench)
ships no robustness script: the paper's equation is the reference (transcribed in tests/test_robustness.py).

Here one record is one architecture (E over one value; the leaderboard then averages R over seeds, as every
metric), i runs over the corruption kinds of the record's ``final.corruption`` table (``bench.run.corruptions``:
10 of CIFAR-10-C's 19 kinds, the others cannot be made here, see that module), A_i^corr = the mean of kind
i's accuracies over the record's severities (1–5 by default, as CIFAR-10-C) and A^norm = ``final.acc``.
BiBench's corruptions all hurt every CIFAR-10 model; on small or grayscale data a kind may not (JPEG on
Fashion-MNIST: gaps of −0.6 to +0.4 points), and G_i / G_i^bi is then infinite or of no meaning. So C counts the
kinds whose gap is > 0 for both models; R is None (shown "—") when no kind is left or the tables are missing.

The fp reference of a record is the done fp record of the same grid with the same dataset, model, seed and
corrupted sets (``config.robustness``); an fp record's own R is 1. Records without one (the W1A1 grid has
no fp cell: its networks are nearly linear in full precision) have no R; their corrupted accuracy is still
in the tables. The fp model's numbers live in its own record, so R is computed here, never stored.
"""

from __future__ import annotations

import math

from bench.report.keys import value_of, value_text


def robustness_index(fp_gaps: list[float], bi_gaps: list[float]) -> float | None:
    """sqrt((1/C) Σ_i (G_i^fp / G_i^bi)²) over the C corruptions with both gaps > 0; None when there is none."""
    if len(fp_gaps) != len(bi_gaps):
        return None
    ratios = [f / b for f, b in zip(fp_gaps, bi_gaps) if f > 0 and b > 0]
    if not ratios:
        return None
    return math.sqrt(sum(r * r for r in ratios) / len(ratios))


def kind_gaps(final: dict, forward: bool = False) -> dict[str, float] | None:
    """Per corruption kind, G = A^norm − (mean over severities of the kind's accuracy), of the deployed model
    (or the F(w) model); None without the clean accuracy or the per-kind table."""
    clean = final.get("acc_forward" if forward else "acc")
    table = final.get("corruption")
    accs = table.get("acc_forward" if forward else "acc") if isinstance(table, dict) else None
    if not isinstance(clean, (int, float)) or not isinstance(accs, dict):
        return None
    return {kind: float(clean) - sum(values) / len(values) for kind, values in accs.items() if values}


def index_against(reference: dict, final: dict, forward: bool = False) -> float | None:
    """R of a record's final metrics against its fp reference's, over the kinds both have."""
    fp, bi = kind_gaps(reference), kind_gaps(final, forward)
    if fp is None or bi is None:
        return None
    kinds = [kind for kind in fp if kind in bi]
    return robustness_index([fp[k] for k in kinds], [bi[k] for k in kinds])


def _reference_key(record: dict) -> tuple:
    cfg = record["config"]
    return (str(cfg.get("dataset")), str(cfg.get("model")), str(cfg.get("seed")), repr(cfg.get("robustness", True)))


def with_index(records: list[dict]) -> list[dict]:
    """``records`` with ``final.robust`` (and ``final.robust_forward``) added where an fp reference exists:
    copies of the records that get them, the others unchanged."""
    fp = {}
    for record in records:
        if record["config"].get("method") == "fp" and record["status"] == "done" and kind_gaps(record["final"]):
            fp.setdefault(_reference_key(record), record)
    out = []
    for record in records:
        ref = fp.get(_reference_key(record))
        if ref is None or record["status"] != "done" or kind_gaps(record["final"]) is None:
            out.append(record)
            continue
        final = dict(record["final"])
        final["robust"] = index_against(ref["final"], record["final"])
        final["robust_forward"] = index_against(ref["final"], record["final"], forward=True)
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
