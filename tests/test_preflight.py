"""`grid run` before anything is submitted: device placement, the pre-flight checks, and cluster profiles.

The GPU placement is a pure function, tested here with any number of GPUs; the CUDA checks run against this
machine's real torch (no GPU here: the one-line error; with GPUs: a GPU index past the last one). The
pre-flight runs on real files: a CIFAR grid over an empty data root (the files are not there), timm weights
against an empty Hugging Face cache, and synthetic grids that pass. Everything runs in this process through
`bench.cli.main` (exit status and stderr as a user sees them), and nothing may be created in the work folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT, TINY_GRID, one_line_error



def bench(capsys, tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    """`python -m bench ARGV --workdir tmp/w --results tmp/r` in this process: (exit status, stdout, stderr)."""
    from bench.cli import main

    rc = main([*argv, "--workdir", str(tmp_path / "w"), "--results", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    return rc, out, err




def grid_file(tmp_path: Path, text: str, name: str = "g") -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No download (CIFAR), an empty data root and an empty Hugging Face cache."""
    monkeypatch.setenv("PROXBENCH_NO_DOWNLOAD", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    (tmp_path / "nodata").mkdir()
    return str(tmp_path / "nodata")


# --------------------------------------------------------------------------- GPU placement
def test_gpu_waves_spread_the_cells_over_every_gpu_before_sharing_one():
    from bench.dispatch.placement import gpu_waves

    assert gpu_waves(5, 2) == [["cuda:0", "cuda:1"], ["cuda:0", "cuda:1"], ["cuda:0"]]
    assert gpu_waves(5, 2, cells_per_gpu=2) == [["cuda:0", "cuda:1", "cuda:0", "cuda:1"], ["cuda:0"]]
    assert gpu_waves(3, 8) == [["cuda:0", "cuda:1", "cuda:2"]]  # a short wave: one cell per GPU
    assert gpu_waves(4, 4, 1) == [["cuda:0", "cuda:1", "cuda:2", "cuda:3"]]
    assert gpu_waves(3, 1, 2, gpu_ids=[3]) == [["cuda:3", "cuda:3"], ["cuda:3"]]  # --device cuda:3
    assert gpu_waves(0, 2) == []
    # every cell gets a device, in order, and no GPU ever holds more than cells_per_gpu cells of a wave
    for n_cells in range(0, 12):
        for n_gpus in range(1, 5):
            for per in range(1, 4):
                waves = gpu_waves(n_cells, n_gpus, per)
                assert sum(len(w) for w in waves) == n_cells
                assert all(max(w.count(f"cuda:{g}") for g in range(n_gpus)) <= per for w in waves)
                assert all(len(w) == n_gpus * per for w in waves[:-1])
    for bad in ((3, 0, 1), (3, 2, 0), (3, 2, 1, [0])):
        with pytest.raises(ValueError):
            gpu_waves(*bad)


def test_local_placement_from_the_device_and_an_injected_gpu_count():
    from bench.dispatch.placement import Placement, local_placement, parse_device
    from bench.errors import UserError

    assert local_placement("cpu", parallel=2).waves(3) == [["cpu", "cpu"], ["cpu"]]
    assert local_placement("cpu") == Placement(parallel=1)
    four = local_placement("cuda", cells_per_gpu=2, n_gpus=4)
    assert four.gpus == (0, 1, 2, 3) and four.per_gpu == 2 and len(four.waves(9)) == 2
    assert four.describe() == "cuda:0, cuda:1, cuda:2, cuda:3 (4 GPU(s) x 2 cell(s) per GPU: 8 cell(s) at a time)"
    assert local_placement("cuda:1", n_gpus=2).waves(2) == [["cuda:1"], ["cuda:1"]]
    with pytest.raises(UserError, match=r"^--device cuda:2: this machine has 2 CUDA device\(s\) \(cuda:0 to cuda:1\)$"):
        local_placement("cuda:2", n_gpus=2)
    with pytest.raises(UserError, match="^--device cuda: no CUDA device is available here"):
        local_placement("cuda", n_gpus=0)
    assert parse_device("cuda:7") == ("cuda", 7) and parse_device("cpu") == ("cpu", None)
    for bad in ("gpu", "cuda:", "cuda:x", "cpu:0", "CUDA", "cuda:-1"):
        with pytest.raises(UserError, match="expected cpu, cuda"):
            parse_device(bad)


def test_device_cuda_without_a_cuda_device_is_one_line_and_submits_nothing(capsys, tmp_path):
    from bench.dispatch.placement import cuda_devices

    n_gpus, _ = cuda_devices()
    device = "cuda" if n_gpus == 0 else f"cuda:{n_gpus}"  # on a GPU machine: one past the last GPU
    expect = "no CUDA device is available here" if n_gpus == 0 else f"this machine has {n_gpus} CUDA device(s)"
    grid = grid_file(tmp_path, TINY_GRID + "[axes]\nseed = [0, 1]\n")
    for executor in ("local", "debug"):
        rc, out, err = bench(capsys, tmp_path, "grid", "run", grid, "--executor", executor, "--device", device)
        one_line_error(rc, err, f"error: pre-flight: --device {device}: ", expect, "nothing submitted")
        assert "pre-flight: grid g: 2 cells, 2 to run" in out
    assert not (tmp_path / "w").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, message", [
    (["--device", "tpu"], "--device 'tpu': expected cpu, cuda (every visible GPU) or cuda:N (GPU N)"),
    (["--cells-per-gpu", "2"], "--cells-per-gpu is for --executor local with --device cuda or cuda:N"),
    (["--device", "cuda", "--cells-per-gpu", "0"], "--cells-per-gpu must be at least 1, got 0"),
    (["--device", "cuda", "--executor", "debug", "--cells-per-gpu", "2"], "--cells-per-gpu is for --executor local"),
    (["--device", "cuda", "--parallel", "2"], "--parallel is for the CPU: with --device cuda the cells at a time"),
    (["--parallel", "0"], "--parallel must be at least 1, got 0"),
])
def test_device_options_that_do_not_fit_together_are_one_line(capsys, tmp_path, argv, message):
    grid = grid_file(tmp_path, TINY_GRID + "[axes]\nseed = [0]\n")
    rc, out, err = bench(capsys, tmp_path, "grid", "run", grid, *argv)
    one_line_error(rc, err, message)
    assert "pre-flight" not in out and not (tmp_path / "w").exists()


# --------------------------------------------------------------------------- pre-flight
def test_preflight_of_a_synthetic_grid_passes_and_states_the_estimate(capsys, tmp_path):
    from bench.dispatch.preflight import gpu_hours_note
    from bench.dispatch.grid import load_grid

    path = grid_file(tmp_path, "gpu_hours = 12\n" + TINY_GRID + "[axes]\nseed = [0, 1, 2, 3]\n")
    rc, out, err = bench(capsys, tmp_path, "grid", "run", path, "--dry-run", "--parallel", "2")
    assert rc == 0 and err == "", err
    assert f"pre-flight: grid g: 4 cells, 4 to run; about 12 GPU-hours for the whole grid (gpu_hours in {path})" in out
    assert ("pre-flight: ok: data synthetic (memory); pretrained weights not needed; device cpu, 2 cell(s) at a time"
            in out)
    assert "4 cells, 4 to submit" in out and not (tmp_path / "w").exists()
    grid = load_grid(path)
    assert gpu_hours_note(grid, 1).endswith("about 3.0 for the 1 cells to run (pro rata)")
    assert gpu_hours_note(load_grid(grid_file(tmp_path, TINY_GRID + "[axes]\nseed = [0]\n", "n")), 1) == \
        f"no GPU-hour estimate (no gpu_hours in {tmp_path / 'n.toml'})"


def test_preflight_lists_every_problem_at_once_and_submits_nothing(capsys, tmp_path, offline):
    """CIFAR files missing, timm weights not cached, no such GPU: three lines, then the count; exit 2."""
    from bench.dispatch.placement import cuda_devices

    n_gpus, _ = cuda_devices()
    device = f"cuda:{n_gpus}"  # never there
    path = grid_file(tmp_path, "gpu_hours = 12\n[defaults]\nepochs = 1\n[axes]\n"
                               'dataset = ["cifar10", "synthetic"]\nmodel = ["fmnist-mlp", "vit_tiny_patch16_224"]\n'
                               '[model.vit_tiny_patch16_224]\nmode = "finetune"\ninit = "timm"\n')
    for dry in ((), ("--dry-run",)):
        rc, out, err = bench(capsys, tmp_path, "grid", "run", path, "--data-root", offline, "--device", device, *dry)
        assert rc == 2, out + err
        lines = err.strip().splitlines()
        assert len(lines) == 4 and all(line.startswith("error: pre-flight: ") for line in lines), err
        assert lines[0].startswith("error: pre-flight: data for 2 cell(s) (cifar10, loader memory): dataset 'cifar10' "
                                   f"not found under {offline}/cifar-10-batches-py")
        assert "https://www.cs.toronto.edu/~kriz/" in lines[0] and "PROXBENCH_NO_DOWNLOAD" in lines[0]
        assert lines[1].startswith('error: pre-flight: pretrained weights for 2 cell(s) (model vit_tiny_patch16_224, '
                                   'init = "timm"): vit_tiny_patch16_224: pretrained weights are not in the local '
                                   'cache')
        assert str(tmp_path / "hf") in lines[1]
        assert lines[2].startswith(f"error: pre-flight: --device {device}: ")
        assert lines[3] == "error: pre-flight: 3 problems (listed above); nothing submitted"
        assert "pre-flight: grid g: 4 cells, 4 to run; about 12 GPU-hours" in out and "pre-flight: ok" not in out
        assert ("(dry run: nothing submitted)" in out) == bool(dry)
    assert not (tmp_path / "w").exists() and not (tmp_path / "r").exists()


def test_preflight_of_the_paper_cifar_grid_without_its_files(capsys, tmp_path, offline):
    """The shipped grid on a machine without CIFAR: both datasets listed, the estimate stated, exit 2."""
    rc, out, err = bench(capsys, tmp_path, "grid", "run", "paper-cifar", "--dry-run", "--data-root", offline)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 3, err
    assert lines[0].startswith("error: pre-flight: data for 135 cell(s) (cifar10, loader memory): dataset 'cifar10' "
                               "not found")
    assert lines[1].startswith("error: pre-flight: data for 135 cell(s) (cifar100, loader memory): dataset 'cifar100' "
                               "not found")
    assert lines[2] == "error: pre-flight: 2 problems (listed above); nothing submitted"
    assert re.search(r"pre-flight: grid paper-cifar: 270 cells, 270 to run; about 400 GPU-hours for the whole grid "
                     r"\(gpu_hours in \S*bench/grids/paper-cifar.toml\)", out), out


def test_a_grid_with_every_cell_finished_checks_nothing(capsys, tmp_path, offline):
    """Nothing to run: no data, weights or device check (a finished CIFAR grid re-runs on any machine)."""
    from bench.run import records
    from bench.dispatch.preflight import preflight
    from bench.dispatch.grid import load_grid

    grid = load_grid(grid_file(tmp_path, '[defaults]\ndataset = "cifar10"\nepochs = 1\n[axes]\nseed = [0]\n'))
    said: list[str] = []
    assert preflight(grid, grid.cells, device="cuda", n_gpus=0, data_root=offline, out=said.append)
    (cell,) = grid.cells
    records.write_record(records.make_record(cell.run_id, grid.name, cell.config, status="done", history=[],
                                             final={}, device="cpu", wall_seconds=1.0), tmp_path / "r")
    rc, out, err = bench(capsys, tmp_path, "grid", "run", str(grid.path), "--dry-run", "--device", "cuda",
                         "--data-root", offline)
    assert rc == 0 and err == "", err
    assert "pre-flight: grid g: 1 cells, 0 to run" in out


# --------------------------------------------------------------------------- cluster profiles
def test_executor_slurm_needs_cluster_and_lists_the_shipped_profiles(capsys, tmp_path):
    grid = grid_file(tmp_path, TINY_GRID + "[axes]\nseed = [0]\n")
    rc, _, err = bench(capsys, tmp_path, "grid", "run", grid, "--executor", "slurm")
    shipped = sorted(f"slurm/{p.name}" for p in (ROOT / "slurm").glob("*.toml"))
    assert "slurm/local.toml" in shipped and "slurm/v100.toml" in shipped
    one_line_error(rc, err, "error: --executor slurm needs --cluster PROFILE: one of " + ", ".join(shipped))
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("cluster", ["slurm/v100.toml", "v100", str(ROOT / "slurm" / "v100.toml")])
def test_the_v100_profile_is_refused_until_its_partition_is_edited(capsys, tmp_path, cluster):
    grid = grid_file(tmp_path, TINY_GRID + "[axes]\nseed = [0]\n")
    for extra in ((), ("--dry-run",)):
        rc, out, err = bench(capsys, tmp_path, "grid", "run", grid, "--executor", "slurm", "--cluster", cluster, *extra)
        one_line_error(rc, err, 'v100.toml: partition = "<your-gpu-partition>" is a placeholder: edit the file',
                       "sinfo -s")
        assert out == ""
    assert not (tmp_path / "w").exists()


def test_placeholders_anywhere_in_a_profile_and_an_edited_copy(tmp_path):
    from bench.dispatch.slurm.profile import load_profile
    from bench.errors import UserError

    shipped = (ROOT / "slurm" / "v100.toml").read_text()
    assert re.search(r'(?m)^partition = "<your-gpu-partition>"', shipped)
    edited = tmp_path / "mysite.toml"
    edited.write_text(shipped.replace('"<your-gpu-partition>"', '"gpu"'))
    profile = load_profile(edited)
    assert profile["partition"] == "gpu" and profile["gpus_per_node"] == 1
    assert load_profile("slurm/local.toml")["partition"] == "debug"  # the test cluster's profile has none
    for text, key in (('partition = "p"\nsetup = ["module load cuda", "<your-module-line>"]\n', "setup[1]"),
                      ('partition = "p"\nadditional_parameters = {account = "<your-account>"}\n',
                       "additional_parameters.account"),
                      ('partition = "p"\nqos = " <your-qos> "\n', "qos")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(UserError, match=rf"^{re.escape(str(bad))}: {re.escape(key)} = .* is a placeholder"):
            load_profile(bad)
    ok = tmp_path / "ok.toml"
    ok.write_text('partition = "p"\nconstraint = "a<b"\nsetup = ["echo <not a whole value"]\n')
    assert load_profile(ok)["constraint"] == "a<b"


def test_slurm_device_must_agree_with_the_profile(capsys, tmp_path):
    """Checked by the pre-flight, before SLURM is contacted (no cluster needed)."""
    grid = grid_file(tmp_path, TINY_GRID + "[axes]\nseed = [0]\n")
    gpu = tmp_path / "gpu.toml"
    gpu.write_text('partition = "gpu"\ngpus_per_node = 1\n')
    for profile, device, message in (
            ("slurm/local.toml", "cuda", "--device cuda: cluster profile "),
            (str(gpu), "cpu", f"--device cpu: cluster profile {gpu} asks for 1 GPU(s) per job"),
            (str(gpu), "cuda:1", "--device cuda:1: a SLURM job sees only the GPU(s) it is given")):
        rc, _, err = bench(capsys, tmp_path, "grid", "run", grid, "--executor", "slurm", "--cluster", profile,
                           "--device", device, "--dry-run")
        one_line_error(rc, err, "error: pre-flight: " + message)
    rc, out, err = bench(capsys, tmp_path, "grid", "run", grid, "--executor", "slurm", "--cluster", str(gpu),
                         "--dry-run")
    assert rc == 0 and f"device cuda, 1 GPU(s) per job (profile {gpu})" in out, err
