"""The captured training step (config key ``capture``) and the loop's deferred checks, on CPU.

``capture = "compile"`` on CPU: ``torch.compile`` without CUDA graphs; here with the "aot_eager" backend
(what is tested is the tracing, the tensor lr and the hooks, not code generation; inductor's fused kernels
round differently). The compiled step keeps the lr in a float32 tensor where the eager step uses a Python
float, and dynamo's traced optimizer orders its arithmetic differently, so the weights differ in the last
bits after one step; binarized models amplify that over steps (a latent near 0 flips sign), hence a 1e-3
tolerance after five steps against the float-lr eager step. Against the eager step with the same tensor lr
(SGD) the losses stay bit-identical and the weights agree to 1e-6. The deferred checks (the CUDA path of
the loop: divergence, loss and step log read at the epoch's end) are forced on CPU with ``defer_checks``.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

import methods
import models

from bench.run import config as configs
from bench.run import layout, train
from bench.run.optim import lr_factor, make_optimizer
from bench.run.step import TrainStep, tensor_lr

pytestmark = pytest.mark.usefixtures("fresh_dynamo")  # dynamo caches and counters reset around each test

BATCH, STEPS = 8, 5
CFG = {"optimizer": "adam", "lr": 3e-3, "epochs": 1, "lr_schedule": "cosine", "latent_weight_decay": 0.0,
       "weight_decay": 0.0, "momentum": 0.9, "warmup_epochs": 0.0}


def _setup(key: str, capture: str, optimizer: str = "adam", lr_tensor: bool | None = None):
    torch.manual_seed(0)
    model = methods.binarize(models.create_model("fmnist-cnn", num_classes=10, in_chans=1, img_size=28), key)
    cfg = {**CFG, "optimizer": optimizer}
    opt = make_optimizer(cfg, model)
    if lr_tensor if lr_tensor is not None else capture != "none":
        tensor_lr(opt, torch.device("cpu"))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, STEPS, STEPS))
    step = TrainStep(model, opt, sched, nn.CrossEntropyLoss(), torch.device("cpu"), capture, backend="aot_eager")
    return model, step


def _batches():
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(BATCH, 1, 28, 28, generator=g), torch.randint(0, 10, (BATCH,), generator=g))
            for _ in range(STEPS)]


def _train(model, step):
    losses, lrs = [], []
    for i, (x, y) in enumerate(_batches()):
        lrs.append(step.host_lrs()[0])
        _, loss = step(x, y, (i + 1) / STEPS)
        losses.append(loss.item())
    return losses, lrs, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("key,optimizer", [("bnn++", "adam"), ("pc", "sgd"), ("rpc", "adam"), ("pq", "sgd")])
def test_compiled_step_follows_the_eager_one(key, optimizer):
    """Same losses, lrs and weights over steps where μ/ρ and the lr move (rPC's and PQ's hooks read the lr),
    and no recompile after the first steps (SGD compiles its step once more when its momentum appears)."""
    eager_model, eager = _setup(key, "none", optimizer)
    e_losses, e_lrs, e_weights = _train(eager_model, eager)
    model, compiled = _setup(key, "compile", optimizer)
    c_losses, c_lrs, c_weights = _train(model, compiled)
    assert c_lrs == e_lrs and len(set(e_lrs)) == STEPS  # the hooks saw the eager step's host floats
    assert c_losses == pytest.approx(e_losses, rel=1e-3)
    for a, b in zip(e_weights, c_weights):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)
    assert methods.get_method(model).progress == 1.0
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert graphs <= (3 if optimizer == "sgd" else 2), graphs  # forward, optimizer step (+ SGD's second)


def test_compiled_step_matches_eager_with_a_tensor_lr_to_rounding():
    """With the same tensor lr and SGD the compiled step stays within float32 rounding of the eager one: the
    traced SGD orders the lr·grad product differently, so weights differ in their last bits, and the losses
    of later steps by about 1e-7 relative."""
    eager_model, eager = _setup("bnn++", "none", "sgd", lr_tensor=True)
    e_losses, _, e_weights = _train(eager_model, eager)
    model, compiled = _setup("bnn++", "compile", "sgd")
    c_losses, _, c_weights = _train(model, compiled)
    assert c_losses[0] == e_losses[0] and c_losses == pytest.approx(e_losses, rel=1e-6, abs=0)
    for a, b in zip(e_weights, c_weights):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_no_recompile_when_schedule_and_lr_move():
    model, step = _setup("bnn++", "compile", "adam")
    batches = _batches()
    step(*batches[0], 0.2)  # the forward graph; the first update runs eagerly (the optimizer's state)
    step(*batches[1], 0.3)  # the update graph
    before = dict(torch._dynamo.utils.counters["stats"])
    for i, (x, y) in enumerate(batches[2:]):
        step(x, y, 0.4 + 0.15 * i)
    assert dict(torch._dynamo.utils.counters["stats"])["unique_graphs"] == before["unique_graphs"]
    assert methods.get_method(model).tensors.mu.item() == pytest.approx(methods.get_method(model).mu)


QUICK = {"model": "fmnist-cnn", "dataset": "synthetic", "epochs": 2, "batch_size": 16, "subset": 64,
         "test_subset": 32, "data_options": {"img_size": 28, "in_chans": 1, "num_classes": 10,
                                             "train_size": 64, "test_size": 32}}


def _run(tmp_path, name, cfg, **kw):
    return train.execute(configs.resolve(cfg), grid="t", workdir=tmp_path / name, results=tmp_path / f"{name}-r",
                         log=lambda m: None, log_every=2, **kw)


def test_capture_key_keeps_old_run_ids_and_is_checked():
    cfg = configs.resolve(dict(QUICK))
    assert cfg["capture"] == "none"
    assert configs.run_id(cfg) == configs.run_id({k: v for k, v in cfg.items() if k != "capture"})
    assert configs.run_id(configs.resolve({**QUICK, "capture": "compile"})) != configs.run_id(cfg)
    with pytest.raises(Exception, match="capture must be one of none, compile"):
        configs.resolve({**QUICK, "capture": "graph"})


def test_deferred_checks_give_the_same_record_and_step_log(tmp_path):
    """The CUDA loop's deferred path (flags, sums and step lines read at the epoch's end) on CPU: the same
    history, final metrics and steps.jsonl as the per-step path."""
    cfg = {**QUICK, "method": "bnn++"}
    now = _run(tmp_path, "now", cfg, defer_checks=False)
    later = _run(tmp_path, "later", cfg, defer_checks=True)
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(now["history"]) == strip(later["history"]) and now["status"] == later["status"] == "done"
    assert {k: v for k, v in now["final"].items() if "memory" not in k} == \
        {k: v for k, v in later["final"].items() if "memory" not in k}
    rid = now["run_id"]
    a = layout.checkpoint_path(tmp_path / "now", rid).parent / layout.STEPS_FILE
    b = layout.checkpoint_path(tmp_path / "later", rid).parent / layout.STEPS_FILE
    assert a.read_text() == b.read_text() and len(a.read_text().splitlines()) == 4


@pytest.mark.parametrize("capture", ["none", "compile"])
def test_divergence_is_recorded_through_the_deferred_check(tmp_path, capture):
    # lr and weight decay at their ceilings (1e3): w ← (1 − 1e6)·w − …, the weights overflow within 16 steps
    cfg = {**QUICK, "method": "fp", "optimizer": "sgd", "lr": 1e3, "weight_decay": 1e3, "momentum": 0.0,
           "batch_size": 4, "capture": capture}
    now = _run(tmp_path, "now", cfg, defer_checks=False, compile_backend="aot_eager")
    later = _run(tmp_path, "later", cfg, defer_checks=True, compile_backend="aot_eager")
    assert now["status"] == later["status"] == "diverged"
    assert now["history"] == later["history"] == []
    assert sorted(now) == sorted(later) and sorted(now["final"]) == sorted(later["final"])
    rid = now["run_id"]
    lines = [(layout.checkpoint_path(tmp_path / d, rid).parent / layout.STEPS_FILE).read_text() for d in ("now", "later")]
    assert lines[0] == lines[1]
    assert all(json.loads(line)["loss"] is not None for line in lines[0].splitlines())
    assert not layout.checkpoint_path(tmp_path / "later", rid).exists()  # the diverged epoch is not checkpointed


def test_compiled_run_trains_and_records(tmp_path):
    record = _run(tmp_path, "c", {**QUICK, "method": "rpc", "capture": "compile"}, compile_backend="aot_eager")
    assert record["status"] == "done" and len(record["history"]) == 2
    assert record["config"]["capture"] == "compile"
    assert all(isinstance(e["lr"], float) for e in record["history"])


def test_gpu_report_code_paths_run_on_cpu():
    """``perf gpu``'s throughput functions at tiny sizes on CPU (no timing asserted)."""
    from bench.perf import cuda

    rows = cuda.capture_rows("cpu", models_=(("fmnist-cnn", 4, 28),), method_keys=["fp", "rpc"],
                             captured=("fp", "rpc"), steps=1, warmup=1, backend="aot_eager", log=lambda m: None)
    assert [r["method"] for r in rows] == ["fp", "rpc"] and rows[0]["ratio"] == 1.0
    assert all(r["none"] > 0 and r["compile"] > 0 for r in rows)
    assert "captured / fp" in cuda.format_capture_table(rows)
    cells = [cuda.cells_per_gpu(k, "cpu", model_name="fmnist-cnn", batch=4, size=28, steps=2) for k in (1, 2)]
    assert [c["cells"] for c in cells] == [1, 2] and all(c["images_per_s"] > 0 for c in cells)
    assert "cell-epochs / GPU-hour" in cuda.format_cells_table(cells)


def _setup_params(key: str, capture: str, optimizer: str, **params):
    """``_setup`` with method parameters (PQ's ``freeze_at``)."""
    torch.manual_seed(0)
    model = methods.binarize(models.create_model("fmnist-cnn", num_classes=10, in_chans=1, img_size=28), key,
                             **params)
    cfg = {**CFG, "optimizer": optimizer}
    opt = make_optimizer(cfg, model)
    if capture != "none":
        tensor_lr(opt, torch.device("cpu"))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, STEPS, STEPS))
    step = TrainStep(model, opt, sched, nn.CrossEntropyLoss(), torch.device("cpu"), capture, backend="aot_eager")
    return model, step


@pytest.mark.parametrize("key,optimizer,params", [("rpc", "adam", {}), ("pq", "sgd", {"freeze_at": 0.5}),
                                                  ("bnn++", "adam", {}), ("bc", "sgd", {})])
def test_whole_update_is_one_graph_and_follows_the_eager_step(key, optimizer, params):
    """The captured step is two graphs, forward+loss and the update (hooks, optimizer step, clipping, schedule),
    and it follows the eager step over steps where the lr, ρ/μ and the progress move.

    Not bit-identical: the captured hooks take the lr as its float32 tensor where the eager ones take the
    Python float, and the traced optimizer orders its arithmetic differently; the binarized models amplify
    last-bit differences over steps, hence the tolerance of ``test_compiled_step_follows_the_eager_one``.
    The schedule's floats (records) and tensors (graphs) agree, PQ's freeze (``freeze_at`` = 0.5: the
    after_step hooks of steps 4 and 5 see progress 0.6 and 0.8) hard-signs the latents at the same steps in
    both, the update function traces without a graph break, and nothing recompiles once the first steps
    compiled (the first update runs eagerly and creates the optimizer's state, so SGD compiles once too)."""
    runs = {}
    for capture in ("none", "compile"):
        model, step = _setup_params(key, capture, optimizer, **params)
        losses, signed = [], []
        for i, (x, y) in enumerate(_batches()):
            _, loss = step(x, y, (i + 1) / STEPS)
            losses.append(loss.item())
            signed.append(all(bool((w.abs() == 1).all()) for w in methods.latent_weights(model)))
            if capture == "compile" and i == 2:  # no compile after the first steps, as progress and lr move
                graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        runs[capture] = (model, step, losses, signed, [p.detach().clone() for p in model.parameters()])
    (e_model, _, e_losses, e_signed, e_weights), (model, step, c_losses, c_signed, c_weights) = \
        runs["none"], runs["compile"]
    assert c_losses == pytest.approx(e_losses, rel=1e-3)
    for a, b in zip(e_weights, c_weights):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)
    assert c_signed == e_signed
    if key == "pq":
        assert e_signed == [False, False, False, True, True]
    if key == "bc":  # latent clipping in the graph
        assert all(float(w.detach().abs().max()) <= 1.0 for w in methods.latent_weights(model))
    method, eager_method = methods.get_method(model), methods.get_method(e_model)
    assert method.params() == eager_method.params() and method.progress == 1.0
    for name, value in method.tensors.named_buffers():
        assert value.item() == pytest.approx(getattr(method, name), rel=1e-12), name
    stats = torch._dynamo.utils.counters["stats"]
    assert stats["unique_graphs"] == graphs == 2, stats  # forward, update
    assert step._update is not None and step._host is None
    with torch.no_grad():
        explained = torch._dynamo.explain(step._update)()
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


def test_schedule_tensor_form_matches_the_float_form():
    """``set_progress_tensors`` writes what ``set_progress`` computes: linear bit for bit (the same float64
    arithmetic), geometric to the last bit of a pow; ``set_progress_floats`` leaves the tensors alone."""
    for schedule, rel in (("linear", 0), ("geometric", 1e-15)):
        method = methods.create_method("bnn++", schedule=schedule)
        for t in (0.0, 0.3, 0.77, 1.0):
            method.set_progress(t)
            expected = method.mu
            method.set_progress(0.5)
            method.set_progress_tensors(torch.tensor(t, dtype=torch.float64))
            assert method.tensors.mu.item() == pytest.approx(expected, rel=rel, abs=0)
            assert method.tensors.progress.item() == t
            method.set_progress_floats(0.1)
            assert method.progress == 0.1 and method.tensors.progress.item() == t


def test_method_without_tensor_hooks_keeps_the_split_capture():
    """A method whose lr hook takes no tensor (a plugin with ``Traits(hooks="eager")``) or whose schedule has no
    tensor form (a ``set_progress`` of its own, ``Traits(traced_schedule=False)``) runs its hooks and
    ``set_progress`` eagerly around a compiled ``optimizer.step()``."""
    assert methods.create_method("rpc").hooks_traceable and methods.create_method("bnn++").schedule_traceable
    assert methods.create_method("recu").schedule_traceable and methods.create_method("fda").schedule_traceable

    class FloatSchedule(methods.get_method_class("bnn++")):
        traits = dataclasses.replace(methods.get_method_class("bnn++").traits, traced_schedule=False)

        def set_progress(self, t):
            super().set_progress(t)

    assert not FloatSchedule().schedule_traceable

    class FloatHooks(methods.get_method_class("rpc")):
        traits = methods.Traits(identity_backward=True, identity_forward=True, hooks="eager")

    assert not FloatHooks().hooks_traceable
    model = methods.binarize(models.create_model("fmnist-cnn", num_classes=10, in_chans=1, img_size=28),
                             FloatHooks())
    opt = make_optimizer({**CFG}, model)
    tensor_lr(opt, torch.device("cpu"))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    step = TrainStep(model, opt, sched, nn.CrossEntropyLoss(), torch.device("cpu"), "compile", backend="aot_eager")
    assert step._update is None and step._host is not None
    x, y = _batches()[0]
    step(x, y, 0.2)
    assert methods.get_method(model).tensors.progress.item() == 0.2
