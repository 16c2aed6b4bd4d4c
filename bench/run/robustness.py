"""The robustness track of a run: accuracy on corrupted copies of the test split (``bench.run.corruptions``).

The config key ``robustness`` is ``true`` (the default: every kind of ``corruptions.CORRUPTIONS`` at
severities 1–5, ``corruptions.SUBSET`` images per set), ``false`` (off), or a table
``{corruptions = [...], severities = [...], subset = N}`` whose missing keys take those defaults. A table equal
to the defaults resolves to ``true``, so it keeps the run id (``robustness = true`` is left out of the hash).

At the end of a run the deployed model, and the F(w) model where it differs, are evaluated on every set, in
batches of ``BATCH`` images; the record's ``final`` gets ``acc_corrupt`` / ``acc_corrupt_forward`` (the mean
over the sets, %) and ``corruption`` (``subset``, ``severities``, and per kind the accuracy at each
severity, for ``acc`` and ``acc_forward``). An fp run's deployed model is its model. Datasets that are not held
in memory (ImageNet) have no corrupted sets: their records carry none. BiBench's robustness index needs the
full-precision model's numbers as well: it is computed when the leaderboard is built
(``bench.report.robustness``).
"""

from __future__ import annotations

import torch

import methods

from bench.errors import UserError
from bench.run import corruptions

BATCH = 1000
KEYS = ("corruptions", "severities", "subset")


def defaults() -> dict:
    return {"corruptions": list(corruptions.CORRUPTIONS), "severities": list(corruptions.SEVERITIES),
            "subset": corruptions.SUBSET}


def resolve(value, where: str = "config"):
    """The config value normalised: ``True``, ``False`` or a full table that differs from the defaults; an
    unknown key, corruption or severity is one ``UserError`` line."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, dict):
        raise UserError(f"{where}: robustness must be true, false or a table of {', '.join(KEYS)}, got {value!r}")
    for key in value:
        if key not in KEYS:
            raise UserError(f"{where}: unknown robustness key {key!r} (valid: {', '.join(KEYS)})")
    table = {**defaults(), **value}
    for name in ("corruptions", "severities"):
        if not isinstance(table[name], list) or not table[name]:
            raise UserError(f"{where}: robustness {name} must be a non-empty list, got {table[name]!r}")
    try:
        for kind in table["corruptions"]:
            corruptions.check(kind, 1)
        for severity in table["severities"]:
            corruptions.check(corruptions.CORRUPTIONS[0], severity)
    except UserError as exc:
        raise UserError(f"{where}: robustness: {exc}") from None
    subset = table["subset"]
    if isinstance(subset, bool) or not isinstance(subset, int) or subset <= 0:
        raise UserError(f"{where}: robustness subset must be a positive integer (images per set), got {subset!r}")
    table["corruptions"] = list(dict.fromkeys(table["corruptions"]))
    table["severities"] = sorted(set(table["severities"]))
    return True if table == defaults() else table


def settings(value) -> dict | None:
    """The table a resolved ``robustness`` value stands for (None: off)."""
    if value is False:
        return None
    return defaults() if value is True else value


def _accuracies(model, x, y, spans, dev, normalize) -> dict[str, list[float]]:
    """Top-1 (%) of ``model`` on each span of the concatenated sets, per kind in severity order."""
    model.eval()
    hits = torch.empty(len(y), dtype=torch.bool)
    with torch.no_grad():
        for i in range(0, len(y), BATCH):
            xb = normalize(x[i:i + BATCH].to(dev), dev.type == "cuda")
            if dev.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    out = model(xb)
            else:
                out = model(xb)
            hits[i:i + BATCH] = (out.argmax(1) == y[i:i + BATCH].to(dev)).cpu()
    result: dict[str, list[float]] = {}
    start = 0
    for kind, _, count in spans:
        result.setdefault(kind, []).append(round(100.0 * hits[start:start + count].float().mean().item(), 4))
        start += count
    return result


def _mean(table: dict[str, list[float]]) -> float:
    values = [v for accs in table.values() for v in accs]
    return round(sum(values) / len(values), 4)


def evaluate(model, cfg: dict, dataset, dev: torch.device, data_root=None) -> dict:
    """The record's robustness metrics (``acc_corrupt``, ``acc_corrupt_forward``, ``corruption``); {} when
    ``robustness`` is off or the dataset is not held in memory. ``dataset``: a ``bench.data.Dataset``."""
    from bench.data.plan import Normalizer

    table = settings(cfg.get("robustness", True))
    if table is None or not getattr(dataset, "in_memory", False):
        return {}
    images, labels = dataset.arrays("test", data_root)
    if cfg.get("test_subset") is not None:
        images, labels = images[: cfg["test_subset"]], labels[: cfg["test_subset"]]
    key = (dataset.cache_key("test", data_root), cfg.get("test_subset"))
    x, y, spans = corruptions.corrupted_sets(images, labels, cfg["dataset"], table["corruptions"],
                                             table["severities"], table["subset"], key=key)
    info = dataset.info
    normalize = Normalizer(info.mean, info.std, dev)
    method = methods.get_method(model)
    with methods.deployed(model):
        deployed = _accuracies(model, x, y, spans, dev, normalize)
    separate = method.binarizes and not method.forward_is_export
    forward = _accuracies(model, x, y, spans, dev, normalize) if separate else deployed
    return {
        "acc_corrupt": _mean(deployed),
        "acc_corrupt_forward": _mean(forward),
        "corruption": {"subset": min(table["subset"], len(labels)), "severities": list(table["severities"]),
                       "acc": deployed, "acc_forward": forward},
    }
