"""``perf step`` at toy sizes: which network each method is timed on, how its ratio samples pair it with fp
steps, and what the report says (no speed of this machine is asserted: that is ``python -m bench perf``'s; one
test slows a method down by a sleep to see where its ratio comes from)."""

from __future__ import annotations

import time

from bench.perf import step as perf_step
from conftest import run_cli


def test_w1a1_methods_are_timed_on_a_network_built_for_binary_activations():
    assert perf_step.w1a1_model("resnet20", "bnn-w1a1") == "resnet20-bireal"
    assert perf_step.w1a1_model("fmnist-cnn", "xnor") == "fmnist-cnn-bireal"
    assert perf_step.w1a1_model("fmnist-cnn-bireal", "recu") == "fmnist-cnn-bireal"
    assert perf_step.w1a1_model("resnet20", "dorefa") == "resnet20-bireal"  # BiBench's DoReFa: sign inputs
    assert perf_step.w1a1_model("vgg-small", "xnor") == "vgg-small"  # no Bi-Real form registered
    assert perf_step.input_shape("fmnist-cnn-bireal") == (1, 28) and perf_step.input_shape("resnet18") == (3, 32)


def test_each_ratio_is_to_the_fp_step_of_its_own_network():
    rows = perf_step.measure_steps("fmnist-cnn", batch=4, repeats=2, warmup=1,
                                   method_keys=["bnn-w1a1", "bc", "xnor"], fuse=True)
    assert [r["method"] for r in rows] == ["fp", "bc", "fp (fmnist-cnn-bireal)", "bnn-w1a1", "xnor", "bc fused",
                                           "bnn-w1a1 fused"]
    networks = {r["method"]: r["network"] for r in rows}
    assert networks["bc"] == networks["bc fused"] == "fmnist-cnn"
    assert networks["bnn-w1a1"] == networks["bnn-w1a1 fused"] == "fmnist-cnn-bireal"
    assert {r["method"]: r["ratio"] for r in rows if r["method"].startswith("fp")} == \
        {"fp": 1.0, "fp (fmnist-cnn-bireal)": 1.0}


def test_a_ratio_sample_pairs_a_method_with_the_fp_steps_of_its_network_around_it(monkeypatch):
    ran = []
    step = perf_step._Stepper.step

    def recorded(self):
        ran.append(f"{self.method}@{self.network}")
        if self.method == "xnor":
            time.sleep(0.05)  # a toy step takes a few ms: xnor's ratio must show the 50 ms
        step(self)

    monkeypatch.setattr(perf_step._Stepper, "step", recorded)
    rows = perf_step.measure_steps("fmnist-cnn", batch=4, repeats=2, warmup=0, method_keys=["bc", "xnor"])
    first = ["fp@fmnist-cnn", "bc@fmnist-cnn", "fp@fmnist-cnn-bireal", "xnor@fmnist-cnn-bireal",
             "fp@fmnist-cnn-bireal"]
    second = ["fp@fmnist-cnn-bireal", "xnor@fmnist-cnn-bireal", "fp@fmnist-cnn", "bc@fmnist-cnn", "fp@fmnist-cnn"]
    assert ran == first + second
    ratio = {r["method"]: r["ratio"] for r in rows}
    assert ratio["xnor"] > 3 and ratio["bc"] * 2 < ratio["xnor"]


def test_the_report_names_the_w1a1_network(tmp_path, capsys):
    out = tmp_path / "perf.md"
    rc, stdout, _ = run_cli(capsys, "perf", "step", "--model", "fmnist-cnn", "--batch", "4", "--repeats", "2",
                            "--methods", "bc,recu", "--out", out)
    assert rc == 0
    text = out.read_text()
    assert "W1A1 methods timed on fmnist-cnn-bireal" in text and "worst W1A1 ratio" in text
    assert "worst weight-method ratio" in text  # bc's
    assert "aten ops over fp" in text and "most aten ops a weight method's eager step adds to fp's" in text
    rows = [{"method": m, "ratio": r, "network": n} for m, r, n in
            [("fp", 1.0, "resnet20"), ("bc", 1.02, "resnet20"), ("bc fused", 1.01, "resnet20"), ("xnor", 1.2, "resnet20")]]
    assert perf_step.budget_lines(rows, "resnet20") == (
        "worst weight-method ratio 1.020 (budget ≤ 1.10, goal ≤ 1.05)\nworst W1A1 ratio 1.200 (budget ≤ 1.15)\n")
    assert "fp (fmnist-cnn-bireal)" in text


def test_w1a1_methods_alone_are_timed_against_their_own_network_only():
    rows = perf_step.measure_steps("fmnist-cnn", batch=4, repeats=2, warmup=0, method_keys=["bnn-w1a1"])
    assert [(r["method"], r["network"]) for r in rows] == [("fp (fmnist-cnn-bireal)", "fmnist-cnn-bireal"),
                                                           ("bnn-w1a1", "fmnist-cnn-bireal")]


def test_the_op_count_column_is_each_step_over_the_fp_step_of_its_network():
    from bench.perf.ops import eager_step_ops

    rows = [{"method": "fp", "network": "fmnist-cnn"}, {"method": "bc", "network": "fmnist-cnn"},
            {"method": "fp (fmnist-cnn-bireal)", "network": "fmnist-cnn-bireal"},
            {"method": "bnn-w1a1", "network": "fmnist-cnn-bireal"}]
    over = {r["method"]: r["ops_over_fp"] for r in perf_step.add_op_counts(rows)}
    assert over["fp"] == over["fp (fmnist-cnn-bireal)"] == 0
    bireal = [eager_step_ops(k, "fmnist-cnn-bireal", in_chans=1, img_size=28) for k in ("fp", "bnn-w1a1")]
    assert over["bnn-w1a1"] == bireal[1] - bireal[0] > 0  # sign and B' on every binarized input, at least
    assert over["bc"] > 0
