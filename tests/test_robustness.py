"""The robustness track and the paper-ready leaderboards: corrupted test sets (determinism, value ranges, bad
names), the config key (run ids kept), BiBench's robustness index on hand-made numbers, aggregation with
robustness records, --metric, the transposed layout, the one-seed bold rule and the PDF figures."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path

import pytest
import torch

from bench.errors import UserError
from bench.report import aggregate as agg
from bench.report import measures, transposed
from bench.report import table as tables
from bench.report.robustness import robustness_index, with_index
from bench.run import config as configs
from bench.run import corruptions, robustness

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "records"


def _images(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8), torch.arange(n) % 10


# -- corrupted sets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", corruptions.CORRUPTIONS)
def test_every_corruption_is_deterministic_uint8_and_changes_the_images(kind):
    x, y = _images()
    for severity in corruptions.SEVERITIES:
        a, ya = corruptions.corrupted_set(x, y, "fashion-mnist", kind, severity, subset=32)
        b, yb = corruptions.corrupted_set(x, y, "fashion-mnist", kind, severity, subset=32)
        assert a.dtype == torch.uint8 and a.shape == (32, 1, 28, 28)
        assert torch.equal(a, b) and torch.equal(ya, yb)  # a fixed seed per (dataset, kind, severity)
    clean = x[torch.randperm(64, generator=corruptions.generator("fashion-mnist", kind, 5))[:32].sort().values]
    assert not torch.equal(a, clean)  # severity 5 changes the images
    assert torch.equal(ya, y[torch.randperm(64, generator=corruptions.generator("fashion-mnist", kind, 5))[:32]
                             .sort().values])


def test_noise_grows_with_the_severity_and_sets_differ_per_dataset():
    x = torch.full((200, 1, 28, 28), 128, dtype=torch.uint8)
    y = torch.zeros(200, dtype=torch.long)
    errors = []
    for severity in corruptions.SEVERITIES:
        a, _ = corruptions.corrupted_set(x, y, "fashion-mnist", "gaussian_noise", severity, subset=None)
        errors.append((a.float() - 128).abs().mean().item())
    assert errors == sorted(errors) and errors[0] > 0
    a, _ = corruptions.corrupted_set(x, y, "fashion-mnist", "gaussian_noise", 3, subset=None)
    b, _ = corruptions.corrupted_set(x, y, "cifar10", "gaussian_noise", 3, subset=None)
    assert not torch.equal(a, b)
    bright, _ = corruptions.corrupted_set(x, y, "fashion-mnist", "brightness", 5, subset=None)
    assert bright.unique().tolist() in ([204], [205])  # x + c on the value: 128 + 76.5, rounded in float32


def test_unknown_corruption_or_severity_is_one_line():
    x, y = _images()
    with pytest.raises(UserError, match=r"^unknown corruption 'gausian_noise'; did you mean 'gaussian_noise'\? \(valid: ") as err:
        corruptions.corrupted_set(x, y, "fashion-mnist", "gausian_noise", 1)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=r"severity must be one of 1, 2, 3, 4, 5, got 6$"):
        corruptions.corrupted_set(x, y, "fashion-mnist", "contrast", 6)


# -- the config key ------------------------------------------------------------------------------------


def test_robustness_key_keeps_run_ids_and_checks_its_table():
    cfg = configs.resolve({})
    assert cfg["robustness"] is True
    old = {k: v for k, v in cfg.items() if k != "robustness"}  # a record made before the key existed
    assert configs.run_id(cfg) == configs.run_id(configs.resolve(old)) == configs.run_id(old)
    same = configs.resolve({"robustness": {"severities": [5, 1, 2, 3, 4]}})
    assert same["robustness"] is True and configs.run_id(same) == configs.run_id(cfg)
    off = configs.resolve({"robustness": False})
    small = configs.resolve({"robustness": {"corruptions": ["contrast"], "subset": 10}})
    assert len({configs.run_id(cfg), configs.run_id(off), configs.run_id(small)}) == 3
    assert small["robustness"] == {"corruptions": ["contrast"], "severities": [1, 2, 3, 4, 5], "subset": 10}
    for bad, message in [({"corruptions": ["fog"]}, "unknown corruption 'fog'"),
                         ({"severities": [0]}, "severity must be one of"),
                         ({"subset": 0}, "subset must be a positive integer"),
                         ({"kinds": []}, "unknown robustness key 'kinds'"),
                         ("yes", "robustness must be true, false or a table")]:
        with pytest.raises(UserError, match=message) as err:
            configs.resolve({"robustness": bad}, "run")
        assert str(err.value).startswith("run: ") and "\n" not in str(err.value)


def test_evaluate_gives_per_corruption_accuracies_for_both_models():
    import methods
    import models

    from bench import data

    torch.manual_seed(0)
    model = models.create_model("fmnist-mlp", num_classes=10)
    methods.binarize(model, "bnn++")
    options = {"in_chans": 1, "img_size": 28}
    cfg = configs.resolve({"model": "fmnist-mlp", "method": "bnn++", "dataset": "synthetic", "test_subset": 40,
                           "data_options": options,
                           "robustness": {"corruptions": ["shot_noise", "pixelate"], "severities": [1, 5],
                                          "subset": 16}})
    out = robustness.evaluate(model, cfg, data.get_dataset("synthetic", options), torch.device("cpu"))
    table = out["corruption"]
    assert table["subset"] == 16 and table["severities"] == [1, 5]
    assert set(table["acc"]) == set(table["acc_forward"]) == {"shot_noise", "pixelate"}
    values = [v for accs in table["acc"].values() for v in accs]
    assert len(values) == 4 and all(0 <= v <= 100 for v in values)
    assert out["acc_corrupt"] == round(sum(values) / 4, 4)
    assert robustness.evaluate(model, {**cfg, "robustness": False}, data.get_dataset("synthetic", options),
                               torch.device("cpu")) == {}


# -- BiBench's index and the leaderboards ----------------------------------------------------------------


def _om_robust(clean_fp, corrupt_fp, clean_bi, corrupt_bi):
    """BiBench (Qin et al., ICML 2023), track "Corruption Robustness", its equation for one architecture:
    G_i = A_i^norm − A_i^corr per corruption i (A_i^corr: the accuracy on corruption i's CIFAR-10-C file, i.e.
    the mean over its five severities), OM_robust = sqrt((1/C) Σ_{i=1}^{C} (G_i / G_i^bi)²)."""
    kinds = sorted(corrupt_fp)
    g_fp = [clean_fp - sum(corrupt_fp[k]) / len(corrupt_fp[k]) for k in kinds]
    g_bi = [clean_bi - sum(corrupt_bi[k]) / len(corrupt_bi[k]) for k in kinds]
    return math.sqrt(sum((a / b) ** 2 for a, b in zip(g_fp, g_bi)) / len(kinds))


def test_robustness_index_formula():
    assert robustness_index([10.0], [20.0]) == 0.5  # the binarized model loses twice as much
    assert robustness_index([10.0, 6.0], [20.0, 3.0]) == pytest.approx(math.sqrt((0.25 + 4.0) / 2))
    assert robustness_index([10.0], [0.0]) is None and robustness_index([10.0], [-1.0]) is None
    assert robustness_index([], []) is None
    # a kind that does not hurt one of the two models has no ratio: left out of C
    assert robustness_index([10.0, 6.0, -0.5], [20.0, 3.0, 0.4]) == pytest.approx(math.sqrt((0.25 + 4.0) / 2))
    assert robustness_index([10.0, 6.0, 0.5], [20.0, 3.0, -0.4]) == pytest.approx(math.sqrt((0.25 + 4.0) / 2))


def test_index_is_bibench_per_corruption_quadratic_mean_over_severity_means():
    fp = {"contrast": [88.0, 80.0, 71.0, 60.0, 41.0], "shot_noise": [89.5, 88.0, 85.0, 84.0, 82.5],
          "pixelate": [90.0, 89.0, 88.5, 86.0, 83.0]}
    bi = {"contrast": [80.0, 66.0, 55.0, 43.0, 20.0], "shot_noise": [84.0, 83.5, 83.0, 82.0, 81.0],
          "pixelate": [84.5, 83.0, 81.0, 78.0, 70.0]}
    f = _record("f", "fp", 91.0, 0.0)
    b = _record("b", "bc", 86.0, 0.0)
    f["final"]["corruption"] = {"subset": 10, "severities": [1, 2, 3, 4, 5], "acc": fp, "acc_forward": fp}
    fw = {k: [a + 1.0 for a in v] for k, v in bi.items()}  # the F(w) model
    b["final"]["corruption"] = {"subset": 10, "severities": [1, 2, 3, 4, 5], "acc": bi, "acc_forward": fw}
    out = {r["run_id"]: r["final"] for r in with_index([f, b])}
    expected = _om_robust(91.0, fp, 86.0, bi)
    assert out["b"]["robust"] == pytest.approx(expected)
    # not the ratio of the pooled gaps (one task), which the index was before
    pooled = (91.0 - sum(map(sum, fp.values())) / 15) / (86.0 - sum(map(sum, bi.values())) / 15)
    assert abs(expected - pooled) > 0.1
    assert out["b"]["robust_forward"] == pytest.approx(_om_robust(91.0, fp, 86.0, fw))
    assert out["f"]["robust"] == 1.0


def _record(run_id, method, acc, corrupt, seed=0):
    record = json.loads((FIXTURES / "fixture" / "0bc459a0f2.json").read_text())
    record.update(run_id=run_id, grid="rob", status="done")
    record["config"].update(method=method, seed=seed, method_params={})
    record["final"].update(acc=acc, acc_forward=acc, acc_corrupt=corrupt, acc_corrupt_forward=corrupt,
                           corruption={"subset": 10, "severities": [1], "acc": {"contrast": [corrupt]},
                                       "acc_forward": {"contrast": [corrupt]}})
    return record


def _grid(tmp_path):
    records = _grid_records()
    folder = tmp_path / "runs" / "rob"
    folder.mkdir(parents=True)
    for r in records:
        (folder / f"{r['run_id']}.json").write_text(json.dumps(r))
    return records


def test_index_uses_the_fp_run_of_the_same_seed():
    records = {r["run_id"]: r for r in with_index(_grid_records())}
    assert records["f0"]["final"]["robust"] == 1.0
    assert records["b0"]["final"]["robust"] == 0.5  # (90 − 80) / (85 − 65)
    assert records["p0"]["final"]["robust"] == 2.0  # (90 − 80) / (84 − 79)
    assert records["b1"]["final"]["robust"] == 0.5  # against f1, not f0
    lone = with_index([_record("x", "bc", 85.0, 65.0)])[0]
    assert "robust" not in lone["final"]  # no fp reference: no index


def _grid_records():
    return [_record("f0", "fp", 90.0, 80.0), _record("b0", "bc", 85.0, 65.0), _record("p0", "pq", 84.0, 79.0),
            _record("f1", "fp", 91.0, 81.0, seed=1), _record("b1", "bc", 86.0, 66.0, seed=1)]


def test_aggregate_writes_the_robustness_tables(tmp_path):
    _grid(tmp_path)
    written = agg.aggregate("rob", tmp_path, figures=False)
    out = tmp_path / "rob"
    assert out / "robustness.tex" in written and out / "robustness.csv" in written
    md = (out / "leaderboard.md").read_text()
    assert "## Robustness: corrupted test sets" in md and "## Robustness index (BiBench)" in md
    index = md.split("## Robustness index (BiBench)")[1]
    assert "| 0.500 ± 0.000 (n=2) |" in index and "2.000 (n=1)" in index
    rows = list(csv.DictReader(io.StringIO((out / "robustness.csv").read_text())))
    assert [(r["method"], r["corruption"], r["acc"], r["seeds"]) for r in rows] == [
        ("BC", "contrast", "65.5000", "2"), ("FP", "contrast", "80.5000", "2"), ("PQ", "contrast", "79.0000", "1")]
    tex = (out / "robustness.tex").read_text()
    assert tex.count("\\begin{table}[t]") == 2 and "\\label{tab:rob-robust}" in tex
    assert "BiBench's robustness index" in tex


def test_metric_option_transposed_layout_and_unknown_names(tmp_path, capsys):
    _grid(tmp_path)
    args = argparse.Namespace(name="rob", results=str(tmp_path), by=None, no_figures=True, metric="robust",
                              transpose=True, spread=0.2)
    agg.cli_aggregate(args)
    out = tmp_path / "rob"
    md = (out / "leaderboard-robust-transposed.md").read_text()
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert lines[0].split("|")[1].strip() == "method" and [line.split("|")[1].strip() for line in lines[2:]] == [
        "FP", "BC", "PQ"]
    assert "drop" not in md  # not an accuracy: no drop or compression rows
    tex = (out / "leaderboard-robust-transposed.tex").read_text()
    assert "\\caption{BiBench's robustness index" in tex and "\\begin{tabular}{@{}lr@{}}" in tex
    table = list(csv.DictReader(io.StringIO((out / "leaderboard-robust-transposed.csv").read_text())))
    assert table[1]["method"] == "BC" and table[1]["value mean"] == "0.5000" and table[1]["value n"] == "2"
    for bad in ("acc_c", "accuracy"):
        with pytest.raises(UserError, match=r"^unknown metric .* \(valid: acc, acc_forward, acc_bn, "):
            agg.cli_aggregate(argparse.Namespace(**{**vars(args), "metric": bad, "name": None}))
    assert not (out / "leaderboard-acc_c.md").exists()


def test_efficiency_metrics_read_every_record():
    record = _record("b0", "bc", 85.0, 65.0)
    record["final"].update(bops=6400, flops=1000, packed_bytes=2048, peak_memory_mb=700.0)
    record["wall_seconds"] = 120.0
    assert measures.get_measure("ops").value(record) == pytest.approx(1100 / 1e6)
    assert measures.get_measure("packed").value(record) == 2.0
    assert measures.get_measure("time").value(record) == 2.0
    record["final"]["ops"] = 500.0  # a W1A1 record's own count wins
    assert measures.get_measure("ops").value(record) == pytest.approx(5e-4)


def test_one_seed_winner_inside_the_spread_is_not_bold():
    close = [_record("f", "fp", 90.0, 80.0), _record("a", "bc", 85.10, 0.0), _record("b", "pq", 85.00, 0.0)]
    assert tables.build_table(close).rows[0].best == []  # 0.10 apart, one seed each: inside 0.2
    assert tables.build_table(close, spread=0.05).rows[0].best == ["bc"]
    far = [_record("f", "fp", 90.0, 80.0), _record("a", "bc", 85.50, 0.0), _record("b", "pq", 85.00, 0.0)]
    assert tables.build_table(far).rows[0].best == ["bc"]
    seeds = [_record(f"a{s}", "bc", 85.0 + s, 0.0, seed=s) for s in range(3)]
    seeds += [_record(f"b{s}", "pq", 84.0 + s, 0.0, seed=s) for s in range(3)]
    assert tables.build_table(seeds).rows[0].best == []  # 1 point apart, std 1: inside the seeds' spread
    md = transposed.to_markdown_t(tables.build_table(far))
    assert "**85.50 (n=1)**" in md


def test_figures_are_written_as_png_and_reproducible_pdf(tmp_path):
    _grid(tmp_path)
    written = agg.aggregate("rob", tmp_path, figures=True)
    pdfs = sorted(p for p in written if p.suffix == ".pdf")
    assert pdfs and {p.with_suffix(".png") for p in pdfs} <= set(written)
    first = {p: p.read_bytes() for p in pdfs}
    assert all(data.startswith(b"%PDF") and b"CreationDate" not in data for data in first.values())
    agg.aggregate("rob", tmp_path, figures=True)
    assert {p: p.read_bytes() for p in pdfs} == first
    assert any(p.name.startswith("acc_vs_ops_") for p in pdfs)  # every method packs to one size
