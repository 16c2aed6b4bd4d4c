"""Leaderboards and figures from run records (bench.report.aggregate and the modules it uses, bench.report.figures), on fixture records.

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

from bench.report import aggregate as agg
from bench.report import keys, latex, loading, markdown, styles
from bench.report import table as tables
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
    # a tie of every binarized cell: no winner, none bold; the drop uses the tied best value, the compression
    # the first tied method (BC)
    assert mlp[3:] == ["89.00 (n=1)", "85.00 (n=1)", "—", "—", "85.00 (n=1)", "—", "4.00", "25.0×"]

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
    assert table[1]["best"] == ""  # BC and BNN+ tie: no winner

    tex = (out / "leaderboard.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\textbf{89.50}$_{\\pm 0.50}$" in tex  # bold mean, std as a subscript
    assert "fmnist-cnn & 91.20$_{\\pm 0.20}$ & 88.20$_{\\pm 0.28}^{(2)}$ & div. \\\\" in tex  # (2): 2 of 3 seeds
    assert "20.0$\\times$" in tex and "(n=" not in tex

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
    records = loading.load_grid("fixture", results, warn=lambda m: None)
    # a scale column would pool bc, bnn and bnn++ in one cell: not seeds of one config
    with pytest.raises(UserError, match=r"method = bc, bnn, bnn\+\+.*--by model,method:scale"):
        tables.build_table(records, "model:scale")
    table = tables.build_table(records, "model,method:scale")
    assert table.row_keys == ("model", "method")
    assert [table.label(c) for c in table.columns] == ["FP", "scale=channel", "scale=tensor"]
    md = markdown.to_markdown(table)
    bc = next(line for line in md.splitlines() if "| fmnist-cnn | bc" in line)
    pq = next(line for line in md.splitlines() if "| fmnist-cnn | pq" in line)
    assert "| 88.20 ± 0.28 (n=2) |" in bc and "**" not in bc and "div." in pq  # a lone cell is no winner
    with pytest.raises(UserError):
        keys.parse_by(":method")
    assert keys.parse_by("dataset,model") == (("dataset", "model"), "method")


def test_method_order_unknown_methods_last(tmp_path):
    src = json.loads(next((FIXTURES / "fixture").glob("0*.json")).read_text())
    records = []
    for i, method in enumerate(["zeta", "bnn++", "alpha-m", "fp", "rpc", "pc", "bnn", "bnn+", "pq", "bc"]):
        r = copy.deepcopy(src)
        r.update(status="done", run_id=f"r{i:02d}")
        r["config"]["method"] = method
        r["final"]["acc"] = 50.0 + i
        records.append(r)
    table = tables.build_table(records)
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


def test_cli_aggregate_by_reads_each_grid_once(results, capsys, monkeypatch):
    """``--by`` checks its keys on the records it then aggregates: each grid's files are read once, and the
    warning about the grid's skipped files is printed once."""
    calls = []
    real = loading.load_records
    monkeypatch.setattr(loading, "load_records", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    args = argparse.Namespace(name=None, results=str(results), by="dataset,model,mode:method", no_figures=True)
    assert agg.cli_aggregate(args) == 0
    assert calls == ["fixture"]
    assert capsys.readouterr().err.count("skipped 3 record(s) of grid 'fixture'") == 1


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
    table = tables.build_table(records)
    finetune = next(row for row in table.rows if "finetune" in row.key)
    assert finetune.cells[styles.FP].mean == 90.0 and finetune.drop == pytest.approx(2.0)
    assert [table.label(c) for c in finetune.best] == ["BNN"]


# ------------------------------------------------------------------------------------------------------
# a cell pools seeds of one config only; duplicated and absurd records


def _run(run_id: str, acc: float | str | None = 90.0, status: str = "done", **config) -> dict:
    """A record (a copy of the fixture's fmnist-mlp bc seed-0 run) with another run id, accuracy and config."""
    record = json.loads((FIXTURES / "fixture" / "0bc459a0f2.json").read_text())
    record.update(run_id=run_id, grid="g", status=status)
    record["config"].update(config)
    record["final"]["acc"] = acc
    return record


def _write_runs(results: Path, grid: str, records: list[dict]) -> Path:
    folder = results / "runs" / grid
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        (folder / f"{record['run_id']}.json").write_text(json.dumps({**record, "grid": grid}))
    return folder


def _lr_axis():
    return [_run("a1", 42.0, method="fp", lr=0.001), _run("a2", 52.0, method="fp", lr=0.01),
            _run("b1", 40.0, method="bc", lr=0.001), _run("b2", 50.0, method="bc", lr=0.01)]


def test_lr_axis_is_not_pooled_as_seeds(tmp_path):
    results = tmp_path / "results"
    _write_runs(results, "lr-axis", _lr_axis())
    with pytest.raises(UserError) as err:
        agg.aggregate("lr-axis", results, figures=False)
    message = str(err.value)
    assert "\n" not in message
    assert "grid 'lr-axis'" in message and "dataset=fashion-mnist, model=fmnist-mlp, mode=e2e" in message
    assert "lr = 0.001, 0.01" in message and "--by dataset,model,mode,lr:method" in message
    assert not (results / "lr-axis" / "leaderboard.md").exists()

    agg.aggregate("lr-axis", results, by="dataset,model,mode,lr:method", figures=False)
    md = (results / "lr-axis" / "leaderboard.md").read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()
            if line.startswith("| fashion-mnist")]
    assert [r[:4] for r in rows] == [["fashion-mnist", "fmnist-mlp", "e2e", "0.001"],
                                     ["fashion-mnist", "fmnist-mlp", "e2e", "0.01"]]
    assert [r[4:7] for r in rows] == [["42.00 (n=1)", "40.00 (n=1)", "2.00"],  # a lone method: no winner
                                      ["52.00 (n=1)", "50.00 (n=1)", "2.00"]]


def test_lr_axis_cli_error(tmp_path):
    results = tmp_path / "results"
    _write_runs(results, "lr-axis", _lr_axis())
    cmd = [sys.executable, "-m", "bench", "aggregate", "--results", str(results), "--no-figures"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "grid 'lr-axis'" in proc.stderr and "lr = 0.001, 0.01" in proc.stderr and "Traceback" not in proc.stderr
    ok = subprocess.run([*cmd, "--by", "dataset,model,mode,lr:method"], capture_output=True, text=True, cwd=ROOT,
                        timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "| fashion-mnist | fmnist-mlp | e2e    | 0.01 " in ok.stdout


def test_every_grid_still_rebuilt_when_one_mixes_configs(results, capsys):
    _write_runs(results, "lr-axis", _lr_axis())
    args = argparse.Namespace(name=None, results=str(results), by=None, no_figures=True)
    with pytest.raises(UserError, match=r"^grid 'lr-axis': .*lr = 0\.001, 0\.01"):
        agg.cli_aggregate(args)
    assert "# Leaderboard: fixture" in capsys.readouterr().out
    assert (results / "fixture" / "leaderboard.md").exists() and not (results / "lr-axis").exists()


def test_adhoc_runs_with_other_epochs_in_one_cell():
    records = [_run("r1", 85.0, method="bc", epochs=3), _run("r2", 87.0, method="bc", epochs=10, seed=1, subset=5000),
               _run("r3", 86.0, method="bc", epochs=3, seed=2)]
    with pytest.raises(UserError, match=r"column BC.*epochs = 3, 10; subset = 5000, -.*--by dataset,model,mode,"
                                        r"epochs,subset:method"):
        tables.build_table(records)
    # the same runs with one epochs value (seeds 0, 1, 2) form one cell
    table = tables.build_table([_run(r["run_id"], r["final"]["acc"], method="bc", seed=r["config"]["seed"])
                             for r in records])
    assert markdown.cell_text(table.rows[0].cells["bc"]) == "86.00 ± 1.00"


def test_method_params_differ_across_columns_not_within_a_cell():
    bnnpp = {"mu_start": 5.0, "mu_end": 30.0, "scale": "channel", "schedule": "linear"}
    good = [_run("f0", 90.0, method="fp", method_params={}), _run("c0", 85.0, method="bc"),
            _run("p0", 86.0, method="bnn++", method_params=bnnpp)]
    table = tables.build_table(good)
    assert [table.label(c) for c in table.rows[0].best] == ["BNN++"]
    other = _run("p1", 88.0, method="bnn++", seed=1, method_params={**bnnpp, "mu_end": 40.0})
    with pytest.raises(UserError, match=r"column BNN\+\+.*method_params\.mu_end = 30\.0, 40\.0"):
        tables.build_table([*good, other])
    table = tables.build_table([*good, other], "dataset,model,method_params.mu_end:method")
    assert [markdown.cell_text(row.cells.get("bnn++")) for row in table.rows] == ["86.00 (n=1)", "88.00 (n=1)", "—"]


def test_same_seed_twice_is_not_two_seeds():
    # two records of one config under two run ids (not a file copy): one seed, not n=2
    with pytest.raises(UserError, match=r"runs x1, x2 all have seed 0 \(the same config under several run ids"):
        tables.build_table([_run("x1", 85.0, method="bc"), _run("x2", 86.0, method="bc")])
    # fine-tunes of one seed from two parents that are not among the records: not two seeds either
    tuned = [_run(f"t{i}", 85.0 + i, method="bc", mode="finetune", init=f"run:gone{i}") for i in range(2)]
    with pytest.raises(UserError, match=r"seed 0 \(fine-tuned from run:gone0, run:gone1"):
        tables.build_table(tuned)


def test_seeds_still_pooled_and_finetune_borrows_fp():
    fp = [_run(f"p{s}", 90.0 + s, method="fp", seed=s) for s in range(3)]
    tuned = [_run(f"t{s}", 87.0 + s, method="bc", seed=s, mode="finetune", init=f"run:p{s}", epochs=1, lr=1e-4)
             for s in range(3)]
    table = tables.build_table([*fp, *tuned])
    e2e, finetune = table.rows
    assert (e2e.key[2], finetune.key[2]) == ("e2e", "finetune")
    assert markdown.cell_text(e2e.cells[styles.FP]) == "91.00 ± 1.00"
    # the fine-tunes start from three different parents (run:p0, run:p1, run:p2) that differ in the seed only
    assert markdown.cell_text(finetune.cells["bc"]) == "88.00 ± 1.00"
    assert finetune.cells[styles.FP] is e2e.cells[styles.FP] and finetune.drop == pytest.approx(3.0)
    # parents that are not among the records: their ids are taken as seed-derived
    table = tables.build_table(tuned)
    assert markdown.cell_text(table.rows[0].cells["bc"]) == "88.00 ± 1.00" and styles.FP not in table.rows[0].cells
    # lr in the rows: the fine-tune row (lr 1e-4) borrows the FP of the row of its parents (lr 0.001)
    table = tables.build_table([*fp, *tuned], "dataset,model,mode,lr:method")
    assert [row.key[2:] for row in table.rows] == [("e2e", "0.001"), ("finetune", "0.0001")]
    assert table.rows[1].cells[styles.FP] is table.rows[0].cells[styles.FP] and table.rows[1].drop == pytest.approx(3.0)


def test_finetunes_from_parents_that_differ_beyond_the_seed():
    fp = [_run("p0", 90.0, method="fp", seed=0, epochs=3), _run("p1", 91.0, method="fp", seed=1, epochs=8)]
    tuned = [_run(f"t{s}", 87.0 + s, method="bc", seed=s, mode="finetune", init=f"run:p{s}", epochs=1)
             for s in range(2)]
    # the e2e row has both parents in one FP cell: an error of its own
    with pytest.raises(UserError, match=r"mode=e2e; column FP.*epochs = 3, 8"):
        tables.build_table([*fp, *tuned])
    # with epochs in the rows the parents are apart, but the fine-tune cell still pools two kinds of parent
    with pytest.raises(UserError, match=r"mode=finetune.*column BC.*init \(parent's epochs\) = 3, 8"):
        tables.build_table([*fp, *tuned], "dataset,model,mode,epochs:method")


def test_duplicated_record_file_counts_once(results, capsys):
    folder = results / "runs" / "fixture"
    shutil.copy(folder / "7c0ba8226e.json", folder / "copy-of-mlp-fp.json")  # fmnist-mlp fp, seed 0
    shutil.copy(folder / "adaa2dc655.json", folder / "zz-copy.json")  # fmnist-cnn fp, seed 0 (of 3)
    agg.aggregate("fixture", results, figures=False)
    rows = _rows((results / "fixture" / "leaderboard.md").read_text())
    assert rows["fmnist-mlp"][3] == "89.00 (n=1)" and rows["fmnist-cnn"][3] == "91.20 ± 0.20"
    summary = list(csv.DictReader(io.StringIO((results / "fixture" / "summary.csv").read_text())))
    assert len(summary) == 14
    err = capsys.readouterr().err
    dup = [line for line in err.splitlines() if "warning" in line and "copy-of-mlp-fp.json" in line]
    assert len(dup) == 1 and "7c0ba8226e.json" in dup[0] and "zz-copy.json" in dup[0] and "adaa2dc655.json" in dup[0]
    assert len([line for line in err.splitlines() if "warning" in line]) == 2  # + the bad-files warning


@pytest.mark.parametrize("acc", [1e9, -5, 100.01, "91.0", None])
def test_absurd_accuracy_is_skipped(results, capsys, acc):
    folder = results / "runs" / "fixture"
    record = json.loads((folder / "1dd14dddd4.json").read_text())  # fmnist-cnn bc, seed 0
    record["run_id"], record["config"]["seed"], record["final"]["acc"] = "absurd0001", 5, acc
    (folder / "absurd0001.json").write_text(json.dumps(record))
    agg.aggregate("fixture", results, figures=False)
    rows = _rows((results / "fixture" / "leaderboard.md").read_text())
    assert rows["fmnist-cnn"][3:5] == ["91.20 ± 0.20", "88.20 ± 0.28 (n=2)"]
    assert rows["fmnist-mlp"][3] == "89.00 (n=1)"
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "absurd0001.json" in warnings[0] and "final.acc" in warnings[0]


def test_accuracy_bounds_are_inclusive():
    assert loading.aggregation_problem(_run("z", 0.0)) is None and loading.aggregation_problem(_run("h", 100.0)) is None
    assert loading.aggregation_problem(_run("n", float("nan"))) and loading.aggregation_problem(_run("i", float("inf")))
    assert loading.aggregation_problem(_run("f", 1e9, status="failed")) is None  # not averaged: no accuracy needed


# -- the .tex leaderboard: one column of a two-column paper ---------------------------------------------


def test_tex_states_the_seeds_once_and_splits_columns_into_stacked_blocks(results):
    agg.aggregate("fixture", results, figures=False)
    tex = (results / "fixture" / "leaderboard.tex").read_text()
    lines = tex.splitlines()
    assert lines[0].startswith("% Requires \\usepackage{booktabs}")
    assert lines[1] == "% n = 3 seeds per cell. Laid out for a 229.5 pt column: 3 blocks of columns, stacked."
    assert lines[2:4] == ["\\begin{table}[t]", "\\centering"] and lines[-1] == "\\end{table}"
    assert lines[5] == "\\label{tab:fixture-acc}"
    assert lines[4].startswith("\\caption{Top-1 accuracy (\\%) of the deployed binary model (dataset fashion-mnist, "
                               "mode e2e), mean$_{\\pm\\mathrm{std}}$ over the seeds (ddof = 1); 3 seeds (n = 3) per "
                               "cell; a superscript $^{(k)}$: k seeds.")
    body = [line for line in lines[6:-1] if not line.startswith("%")]
    assert body[0] == "\\begin{tabular}{@{}l@{\\hspace{8pt}}r@{\\hspace{8pt}}r@{\\hspace{8pt}}r@{}}"
    headers = [line for line in body if line.startswith("model &")]
    assert headers == ["model & FP & BC & PQ \\\\", "model & BNN & BNN+ & BNN++ \\\\", "model & drop & comp. &  \\\\"]
    assert "fmnist-mlp & -- & 85.00$^{(1)}$ & -- \\\\" in body  # BNN+, tied with BC: no winner
    assert "fmnist-mlp & 4.00 & 25.0$\\times$ &  \\\\" in body
    assert body.count("\\toprule") == 1 and body.count("\\bottomrule") == 1 and body.count("\\midrule") == 3
    assert body.count("\\midrule[\\heavyrulewidth]") == 2  # between the blocks


def test_tex_one_row_has_no_label_column_and_n_1_has_no_marks():
    records = [_run(f"r{i}", 80.0 + i, method=m) for i, m in enumerate(("fp", "bc", "pc", "rpc", "pq", "bnn"))]
    tex = latex.to_latex(tables.build_table(records))
    assert "% n = 1 seed per cell." in tex and "$^{(" not in tex and "\\pm" not in tex.split("\\caption")[1][:80]
    assert "(dataset fashion-mnist, model fmnist-mlp, mode e2e); 1 seed (n = 1) per cell." in tex
    assert "\\begin{tabular}{@{}r@{" in tex  # every row key is in the caption


def _pdflatex_width(tmp_path: Path, tex: str) -> tuple[float, float]:
    """(table width, \\columnwidth) in pt, from compiling ``tex`` in a 10 pt two-column article."""
    (tmp_path / "table.tex").write_text(tex)
    (tmp_path / "doc.tex").write_text(
        "\\documentclass[10pt,twocolumn]{article}\n\\usepackage{booktabs}\n\\newsavebox\\tbl\n\\begin{document}\n"
        "\\sbox\\tbl{\\input{table.tex}}\n\\typeout{TABLEWIDTH=\\the\\wd\\tbl;COLUMNWIDTH=\\the\\columnwidth}\n"
        "\\begin{table}\\centering\\usebox\\tbl\\caption{x}\\end{table}\nx\n\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    import re

    found = re.search(r"TABLEWIDTH=([\d.]+)pt;COLUMNWIDTH=([\d.]+)pt", proc.stdout)
    assert found, proc.stdout[-3000:]
    return float(found.group(1)), float(found.group(2))


def _wide_records() -> list[dict]:
    """3 seeds of every built-in method and two long-named plugins, 2 datasets x 3 models x 2 modes."""
    records = []
    for dataset in ("cifar10", "cifar100"):
        for model in ("resnet20", "vgg-small", "deit-small-patch16-224"):
            for mode in ("e2e", "finetune"):
                for method in (*styles.builtin_order(), "tanh-ste", "my-long-method-name"):
                    for seed in range(3):
                        records.append(_run(f"{dataset}{model}{mode}{method}{seed}", 60.0 + 13.37 * seed,
                                            method=method, dataset=dataset, model=model, mode=mode, seed=seed))
    return records


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed (apt-get install "
                    "texlive-latex-base texlive-latex-recommended)")
@pytest.mark.parametrize("case", ["fixture", "one-row", "wide", "by-scale"])
def test_tex_compiles_and_fits_one_column(results, tmp_path, case):
    records = loading.load_grid("fixture", results, warn=lambda m: None)
    table = {
        "fixture": lambda: tables.build_table(records),
        "one-row": lambda: tables.build_table([_run(f"r{i}", 80.0 + i, method=m) for i, m in enumerate(styles.builtin_order())]),
        "wide": lambda: tables.build_table(_wide_records()),
        "by-scale": lambda: tables.build_table(records, "model,method:scale"),
    }[case]()
    width, column = _pdflatex_width(tmp_path, latex.to_latex(table, float_env=False))
    assert column == latex.TEX_WIDTH_PT == 229.5
    assert width <= latex.TEX_WIDTH_PT, f"{case}: {width} pt"


@pytest.mark.parametrize("grid", ["default", "ablation-scale", "vit-demo"])
def test_committed_tables_are_what_the_committed_records_give(tmp_path, grid):
    shutil.copytree(ROOT / "results" / "runs" / grid, tmp_path / "runs" / grid)
    agg.aggregate(grid, tmp_path, figures=False)
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "summary.csv"):
        assert (tmp_path / grid / name).read_bytes() == (ROOT / "results" / grid / name).read_bytes(), name
