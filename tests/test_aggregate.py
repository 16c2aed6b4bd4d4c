"""Leaderboards and figures from run records (bench.aggregate, bench.figures), on fixture records.

tests/fixtures/records/fixture/ holds 14 valid records of a grid "fixture" (fashion-mnist, e2e):
fmnist-cnn: fp 91.0/91.2/91.4, bnn++ 89.0/89.5/90.0, bc 88.0/88.4, pq diverged, bnn 87.0 + one failed seed;
fmnist-mlp: fp 89.0, bnn+ 85.0, bc 85.0 (a tie), and three bad files: corrupt.json (truncated JSON),
future0001.json (schema 99), partial001.json (config without "model").
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import aggregate as agg
from bench.errors import UserError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "records"
ROOT = Path(__file__).resolve().parent.parent
BAD = ("corrupt.json", "future0001.json", "partial001.json")


@pytest.fixture
def results(tmp_path):
    out = tmp_path / "results"
    shutil.copytree(FIXTURES / "fixture", out / "runs" / "fixture")
    return out


def _rows(md: str) -> dict[str, list[str]]:
    rows = {}
    for line in md.splitlines():
        if line.startswith("| fashion-mnist"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[1]] = cells
    return rows


def test_leaderboard_cells(results, capsys):
    paths = agg.aggregate("fixture", results, figures=False)
    out = results / "fixture"
    assert paths == sorted([out / "leaderboard.md", out / "leaderboard.csv", out / "leaderboard.tex", out / "summary.csv"])
    md = (out / "leaderboard.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| dataset"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "dataset", "model", "mode", "FP", "BC", "PQ", "BNN", "BNN+", "BNN++", "drop (FP − best)", "compression (best)"]
    rows = _rows(md)
    assert list(rows) == ["fmnist-cnn", "fmnist-mlp"]
    cnn, mlp = rows["fmnist-cnn"], rows["fmnist-mlp"]
    # mean ± sample std (ddof=1); n shown below 3 seeds; diverged-only cell; failed seeds do not count
    assert cnn[3:] == ["91.20 ± 0.20", "88.20 ± 0.28 (n=2)", "div.", "87.00 (n=1)", "—", "**89.50 ± 0.50**",
                       "1.70", "20.0×"]
    # a tie: both bold; the drop uses the tied best value, the compression the first tied method (BC)
    assert mlp[3:] == ["89.00 (n=1)", "**85.00 (n=1)**", "—", "—", "**85.00 (n=1)**", "—", "4.00", "25.0×"]

    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    for name in BAD:
        assert name in warnings[0]
    assert "schema" in warnings[0] and "partial" in warnings[0]


def test_csv_tex_and_summary(results):
    agg.aggregate("fixture", results, figures=False)
    out = results / "fixture"
    table = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    cnn = table[0]
    assert (cnn["model"], cnn["FP mean"], cnn["FP std"], cnn["FP n"]) == ("fmnist-cnn", "91.2000", "0.2000", "3")
    assert (cnn["BC std"], cnn["PQ n"], cnn["PQ diverged"], cnn["best"], cnn["drop"]) == ("0.2828", "0", "1", "BNN++", "1.7000")
    assert table[1]["best"] == "BC;BNN+"

    tex = (out / "leaderboard.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\textbf{89.50 $\\pm$ 0.50}" in tex
    assert "fashion-mnist & fmnist-cnn & e2e & 91.20 $\\pm$ 0.20 &" in tex
    assert "20.0$\\times$" in tex

    summary = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    assert len(summary) == 14
    assert [r["run_id"] for r in summary] == sorted(r["run_id"] for r in summary)
    done = [r for r in summary if r["status"] == "done"]
    assert len(done) == 12 and all(r["final.acc"] for r in done)
    assert {"method_params.mu_start", "method_params.scale", "final.compression", "seed"} <= set(summary[0])


def test_deterministic_bytes(tmp_path):
    """Same records -> same bytes, figures included, whatever the folder or file order."""
    outputs = []
    for name in ("a", "b"):
        results = tmp_path / name
        shutil.copytree(FIXTURES / "fixture", results / "runs" / "fixture")
        if name == "b":  # rewrite the files in another order (other mtimes/inodes)
            for path in sorted((results / "runs" / "fixture").glob("*.json"), reverse=True):
                data = path.read_bytes()
                path.unlink()
                path.write_bytes(data)
        paths = agg.aggregate("fixture", results)
        outputs.append({p.relative_to(results).as_posix(): p.read_bytes() for p in paths})
    assert outputs[0] == outputs[1]
    pngs = [k for k in outputs[0] if k.endswith(".png")]
    assert sorted(Path(k).name for k in pngs) == [
        "acc_vs_compression_fashion-mnist_e2e.png",
        "accuracy_fashion-mnist_fmnist-cnn_e2e.png",
        "accuracy_fashion-mnist_fmnist-mlp_e2e.png",
        "schedule_fashion-mnist_fmnist-cnn_e2e.png",
        "schedule_fashion-mnist_fmnist-mlp_e2e.png",
    ]
    assert all(outputs[0][k].startswith(b"\x89PNG") for k in pngs)
    assert b"Software" not in b"".join(outputs[0][k] for k in pngs)


def test_stale_figures_removed(results):
    agg.aggregate("fixture", results)
    figures = results / "fixture" / "figures"
    (figures / "accuracy_old.png").write_bytes(b"stale")
    (figures / "quantizers_bnn.png").write_bytes(b"not ours")
    agg.aggregate("fixture", results)
    assert not (figures / "accuracy_old.png").exists()
    assert (figures / "quantizers_bnn.png").exists()


def test_by_other_keys(results):
    table = agg.build_table(agg.load_grid("fixture", results, warn=lambda m: None), "model:scale")
    assert table.row_keys == ("model",) and [table.label(c) for c in table.columns] == ["FP", "scale=channel", "scale=tensor"]
    md = agg.to_markdown(table)
    cnn = next(line for line in md.splitlines() if "fmnist-cnn" in line)
    # channel: bc 88.0 88.4, bnn 87.0, bnn++ 89.0 89.5 90.0 (done seeds of every binarized method)
    assert "**88.65 ± 1.08**" in cnn and "div." in cnn
    with pytest.raises(UserError):
        agg.parse_by(":method")
    assert agg.parse_by("dataset,model") == (("dataset", "model"), "method")


def test_method_order_unknown_methods_last(tmp_path):
    src = json.loads(next((FIXTURES / "fixture").glob("0*.json")).read_text())
    records = []
    for i, method in enumerate(["zeta", "bnn++", "alpha-m", "fp", "rpc", "pc", "bnn", "bnn+", "pq", "bc"]):
        r = copy.deepcopy(src)
        r.update(status="done", run_id=f"r{i:02d}")
        r["config"]["method"] = method
        r["final"]["acc"] = 50.0 + i
        records.append(r)
    table = agg.build_table(records)
    assert [table.label(c) for c in table.columns] == [
        "FP", "BC", "PC", "rPC", "PQ", "BNN", "BNN+", "BNN++", "alpha-m", "zeta"]


def test_cli_aggregate(results, capsys):
    # a second grid whose only file is corrupt: skipped with a warning when aggregating every grid
    (results / "runs" / "broken").mkdir()
    (results / "runs" / "broken" / "x.json").write_text("{")
    args = argparse.Namespace(name=None, results=str(results), by=None, no_figures=True)
    assert agg.cli_aggregate(args) == 0
    captured = capsys.readouterr()
    assert "| fashion-mnist | fmnist-cnn" in captured.out and "# Leaderboard: fixture" in captured.out
    assert "broken" in captured.err
    with pytest.raises(UserError, match="no valid run records"):
        agg.cli_aggregate(argparse.Namespace(name="broken", results=str(results), by=None, no_figures=True))
    with pytest.raises(UserError, match="grids with records: broken, fixture"):
        agg.cli_aggregate(argparse.Namespace(name="nope", results=str(results), by=None, no_figures=True))
    (results / "runs" / "empty").mkdir()
    with pytest.raises(UserError):
        agg.cli_aggregate(argparse.Namespace(name="empty", results=str(results), by=None, no_figures=True))


def test_cli_end_to_end(results):
    cmd = [sys.executable, "-m", "bench", "aggregate", "fixture", "--results", str(results), "--no-figures"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "**89.50 ± 0.50**" in proc.stdout
    assert proc.stderr.count("warning") == 1
    bad = subprocess.run([*cmd[:3], "aggregate", "missing", "--results", str(results)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_finetune_row_compares_with_the_fp_run_it_started_from():
    src = json.loads(next((FIXTURES / "fixture").glob("0*.json")).read_text())
    records = []
    for i, (method, mode, acc) in enumerate([("fp", "e2e", 90.0), ("bc", "finetune", 87.5), ("bnn", "finetune", 88.0)]):
        r = copy.deepcopy(src)
        r.update(status="done", run_id=f"f{i:02d}")
        r["config"].update(method=method, mode=mode)
        r["final"]["acc"] = acc
        records.append(r)
    table = agg.build_table(records)
    finetune = next(row for row in table.rows if "finetune" in row.key)
    assert finetune.cells[agg.FP].mean == 90.0 and finetune.drop == pytest.approx(2.0)
    assert [table.label(c) for c in finetune.best] == ["BNN"]
