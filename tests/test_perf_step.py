"""``perf step`` at toy sizes: which network each method is timed on and what the report says (no timing is
asserted: speed is measured by ``python -m bench perf``, never by a test)."""

from __future__ import annotations

from bench.perf import step as perf_step
from conftest import run_cli


def test_w1a1_methods_are_timed_on_a_network_built_for_binary_activations():
    assert perf_step.w1a1_model("resnet20", "bnn-w1a1") == "resnet20-bireal"
    assert perf_step.w1a1_model("fmnist-cnn", "xnor") == "fmnist-cnn-bireal"
    assert perf_step.w1a1_model("fmnist-cnn-bireal", "recu") == "fmnist-cnn-bireal"
    assert perf_step.w1a1_model("resnet20", "dorefa") == "resnet20"  # {0, 1} activations work after a ReLU
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
    by_name = {r["method"]: r for r in rows}
    assert by_name["fp"]["ratio"] == 1.0 and by_name["fp (fmnist-cnn-bireal)"]["ratio"] == 1.0
    assert by_name["xnor"]["ratio"] == by_name["xnor"]["median_ms"] / by_name["fp (fmnist-cnn-bireal)"]["median_ms"]


def test_the_report_names_the_w1a1_network(tmp_path, capsys):
    out = tmp_path / "perf.md"
    rc, stdout, _ = run_cli(capsys, "perf", "step", "--model", "fmnist-cnn", "--batch", "4", "--repeats", "2",
                            "--methods", "bc,recu", "--out", out)
    assert rc == 0
    text = out.read_text()
    assert "W1A1 methods timed on fmnist-cnn-bireal" in text and "worst W1A1 ratio" in text
    assert "worst weight-method ratio" in text  # bc's
    rows = [{"method": m, "ratio": r, "network": n} for m, r, n in
            [("fp", 1.0, "resnet20"), ("bc", 1.02, "resnet20"), ("bc fused", 1.01, "resnet20"), ("xnor", 1.2, "resnet20")]]
    assert perf_step.budget_lines(rows, "resnet20") == (
        "worst weight-method ratio 1.020 (budget ≤ 1.10, goal ≤ 1.05)\nW1A1 methods worst W1A1 ratio 1.200 (budget ≤ 1.15)\n")
    assert "fp (fmnist-cnn-bireal)" in text
