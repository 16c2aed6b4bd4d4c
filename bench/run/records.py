"""Run records: the schema-versioned JSON every table and figure is rebuilt from, typed.

A record is ``<results>/runs/<grid>/<run_id>.json`` (``layout.record_path``), written atomically (temp
file, fsync, rename) with sorted keys, one-space indent and NaN/inf stored as null: a reader never sees a
half-written record. ``SCHEMA`` is bumped on any incompatible change; readers skip other versions.

In memory a record is a ``RunRecord``: the run's identity (``run_id``, ``grid``, ``status``, ``error``),
its resolved ``config`` (a table), its ``history`` (one ``EpochMetrics`` per evaluated epoch; epoch 0 is a
fine-tune's starting point), its ``final`` metrics (``FinalMetrics``) and its ``Provenance`` (git commit,
package versions, device, platform, summed wall time, finish time). ``to_dict()`` is the JSON object of
the file; ``RunRecord.from_dict`` checks a parsed file, nested parts included, and keeps keys it does not
know (a plugin's extra metric) so that they survive the round trip.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from bench.run.environment import git_commit, package_versions, platform_name, utc_now
from bench.run.jsonfile import finite, write_json_atomic
from bench.run.layout import record_path, records_dir

SCHEMA = 1
REQUIRED = ("schema", "run_id", "grid", "status", "config", "history", "final")
STATUSES = ("done", "diverged", "failed")


class RecordError(ValueError):
    """Why a parsed file is not a record of this schema (the text is the reason a reader reports)."""


class Absent:
    """The value of a field that the record's file does not have (left out of ``to_dict`` as well)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = Absent()


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(ok: bool, where: str, want: str, value) -> None:
    if not ok:
        raise RecordError(f"{where} must be {want}, got {value!r}")


class Part:
    """A record part: dataclass fields (``ABSENT`` when the file lacks them) plus ``extra``, the keys the
    class does not know. ``NUMBERS`` name the fields that hold a number or null."""

    NUMBERS: ClassVar[tuple[str, ...]] = ()
    extra: dict

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**{k: v for k, v in out.items() if v is not ABSENT}, **self.extra}

    @classmethod
    def split(cls, data, where: str) -> tuple[dict, dict]:
        """(known fields, other keys) of ``data``, after checking that it is an object and its numbers."""
        if not isinstance(data, dict):
            raise RecordError(f"{where} must be an object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        for name in cls.NUMBERS:
            if name in known:
                _check(known[name] is None or is_number(known[name]), f"{where}.{name}" if where else name,
                       "a number or null", known[name])
        return known, {k: v for k, v in data.items() if k not in names}


@dataclass
class EpochMetrics(Part):
    """One history entry: the metrics at the end of epoch ``epoch``. Accuracies in %, ``flip_ratio`` the
    share of deployed signs changed during the epoch, ``method_params`` the method's float parameters."""

    epoch: int
    train_loss: float | None | Absent = ABSENT
    train_acc: float | None | Absent = ABSENT
    test_acc: float | None | Absent = ABSENT
    test_acc_forward: float | None | Absent = ABSENT
    lr: float | None | Absent = ABSENT
    method_params: dict | Absent = ABSENT
    flip_ratio: float | None | Absent = ABSENT
    seconds: float | None | Absent = ABSENT
    extra: dict = field(default_factory=dict)

    NUMBERS: ClassVar[tuple[str, ...]] = ("train_loss", "train_acc", "test_acc", "test_acc_forward", "lr",
                                          "flip_ratio", "seconds")

    @classmethod
    def from_dict(cls, data, where: str = "history entry") -> EpochMetrics:
        known, extra = cls.split(data, where)
        if "epoch" not in known:
            raise RecordError(f"{where} lacks its epoch")
        epoch = known["epoch"]
        _check(isinstance(epoch, int) and not isinstance(epoch, bool), f"{where}.epoch", "an integer", epoch)
        params = known.get("method_params", ABSENT)
        if params is not ABSENT:
            _check(isinstance(params, dict), f"{where}.method_params", "an object", params)
            for name, value in params.items():
                _check(value is None or is_number(value), f"{where}.method_params.{name}", "a number or null",
                       value)
        return cls(**known, extra=extra)


@dataclass
class FinalMetrics(Part):
    """A run's final numbers: accuracies of the last epoch (``acc`` deployed, ``acc_forward`` the F(w)
    model, ``acc_bn`` after BatchNorm re-estimation), sizes (``params``, ``binarized_params``, ``fp32_bytes``,
    ``packed_bytes``, ``compression``), operation counts (``flops``, ``bops``; W1A1 models add
    ``bops_w1a1``, ``flops_w1a1``, ``ops``), ``peak_memory_mb`` and ``epochs_done``. A failed run has none."""

    acc: float | None | Absent = ABSENT
    acc_forward: float | None | Absent = ABSENT
    acc_bn: float | None | Absent = ABSENT
    train_loss: float | None | Absent = ABSENT
    params: int | None | Absent = ABSENT
    binarized_params: int | None | Absent = ABSENT
    fp32_bytes: int | None | Absent = ABSENT
    packed_bytes: int | None | Absent = ABSENT
    compression: float | None | Absent = ABSENT
    flops: float | None | Absent = ABSENT
    bops: float | None | Absent = ABSENT
    bops_w1a1: float | None | Absent = ABSENT
    flops_w1a1: float | None | Absent = ABSENT
    ops: float | None | Absent = ABSENT
    peak_memory_mb: float | None | Absent = ABSENT
    epochs_done: int | None | Absent = ABSENT
    acc_corrupt: float | None | Absent = ABSENT
    acc_corrupt_forward: float | None | Absent = ABSENT
    corruption: dict | Absent = ABSENT
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where: str = "final") -> FinalMetrics:
        known, extra = cls.split(data, where)
        table = known.get("corruption", ABSENT)
        if table is not ABSENT:
            _check(isinstance(table, dict), f"{where}.corruption", "an object", table)
        return cls(**known, extra=extra)


# every metric but the robustness track's per-corruption table (bench.run.robustness)
FinalMetrics.NUMBERS = tuple(f.name for f in fields(FinalMetrics) if f.name not in ("extra", "corruption"))


@dataclass
class Provenance(Part):
    """Where and when a record was made: ``git_commit``, ``versions`` (python and ``PACKAGES``; None when a
    package is not installed), ``device``, ``platform``, ``wall_seconds`` (summed over the run's processes)
    and ``finished_at`` (UTC, ISO 8601)."""

    git_commit: str | None | Absent = ABSENT
    versions: dict | Absent = ABSENT
    device: str | Absent = ABSENT
    platform: str | Absent = ABSENT
    wall_seconds: float | None | Absent = ABSENT
    finished_at: str | Absent = ABSENT
    extra: dict = field(default_factory=dict)  # always empty: a record's unknown keys go to RunRecord.extra

    NUMBERS: ClassVar[tuple[str, ...]] = ("wall_seconds",)

    @classmethod
    def collect(cls, device: str, wall_seconds: float) -> Provenance:
        """This process's provenance, now."""
        return cls(git_commit=git_commit(), versions=package_versions(), device=device, platform=platform_name(),
                   wall_seconds=round(wall_seconds, 2), finished_at=utc_now())

    @classmethod
    def from_dict(cls, data, where: str = "") -> Provenance:
        known, _ = cls.split(data, where)
        for name in ("device", "platform", "finished_at", "git_commit"):
            value = known.get(name, ABSENT)
            if value is not ABSENT:
                _check(isinstance(value, str) or (name == "git_commit" and value is None), name,
                       "a string" + (" or null" if name == "git_commit" else ""), value)
        versions = known.get("versions", ABSENT)
        if versions is not ABSENT:
            _check(isinstance(versions, dict), "versions", "an object", versions)
        return cls(**known)


@dataclass
class RunRecord:
    """One run's record (see the module docstring); ``extra``: top-level keys this schema does not name."""

    run_id: str
    grid: str
    status: str
    config: dict
    history: list[EpochMetrics]
    final: FinalMetrics
    error: str | None | Absent = None
    provenance: Provenance = field(default_factory=Provenance)
    schema: int = SCHEMA
    extra: dict = field(default_factory=dict)

    TOP: ClassVar[tuple[str, ...]] = REQUIRED + ("error",)

    def to_dict(self) -> dict:
        """The record's JSON object (what the file holds, before NaN/inf become null)."""
        out = {"schema": self.schema, "run_id": self.run_id, "grid": self.grid, "status": self.status}
        if self.error is not ABSENT:
            out["error"] = self.error
        out.update(config=self.config, history=[h.to_dict() for h in self.history], final=self.final.to_dict())
        return {**out, **self.provenance.to_dict(), **self.extra}

    @classmethod
    def from_dict(cls, data) -> RunRecord:
        """Check a parsed record file and type it; a ``RecordError`` says what is wrong."""
        if not isinstance(data, dict):
            raise RecordError("not a JSON object")
        if data.get("schema") != SCHEMA:
            raise RecordError(f"unknown schema version {data.get('schema')!r} (this proxbench reads {SCHEMA})")
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise RecordError(f"missing keys: {', '.join(missing)}")
        if data["status"] not in STATUSES:
            raise RecordError(f"unknown status {data['status']!r}")
        if not isinstance(data["final"], dict) or not isinstance(data["history"], list):
            raise RecordError("final must be an object and history a list")
        for name in ("run_id", "grid"):
            _check(isinstance(data[name], str), name, "a string", data[name])
        error = data.get("error", ABSENT)
        _check(error is ABSENT or error is None or isinstance(error, str), "error", "a string or null", error)
        history = [EpochMetrics.from_dict(entry, f"history[{i}]") for i, entry in enumerate(data["history"])]
        prov_names = {f.name for f in fields(Provenance)} - {"extra"}
        provenance = Provenance.from_dict({k: v for k, v in data.items() if k in prov_names})
        extra = {k: v for k, v in data.items() if k not in cls.TOP and k not in prov_names}
        return cls(run_id=data["run_id"], grid=data["grid"], status=data["status"], config=data["config"],
                   history=history, final=FinalMetrics.from_dict(data["final"]), error=error,
                   provenance=provenance, schema=data["schema"], extra=extra)


def make_record(run_id: str, grid: str, cfg: dict, *, status: str, history: list, final, device: str,
                wall_seconds: float, error: str | None = None) -> RunRecord:
    """A record of this process, finished now. ``history`` entries and ``final`` may be the typed parts or
    their dicts (checked then)."""
    return RunRecord(
        run_id=run_id, grid=grid, status=status, error=error, config=cfg,
        history=[h if isinstance(h, EpochMetrics) else EpochMetrics.from_dict(h, f"history[{i}]")
                 for i, h in enumerate(history)],
        final=final if isinstance(final, FinalMetrics) else FinalMetrics.from_dict(final),
        provenance=Provenance.collect(device, wall_seconds),
    )


def validate(record) -> str | None:
    """None when ``record`` (a dict or a ``RunRecord``) is a complete record of this schema, else why not."""
    try:
        RunRecord.from_dict(record.to_dict() if isinstance(record, RunRecord) else record)
    except RecordError as exc:
        return str(exc)
    return None


def write_record(record: RunRecord, results: str | Path) -> Path:
    """Write ``record`` to ``<results>/runs/<grid>/<run_id>.json`` atomically, NaN/inf as null."""
    path = record_path(results, record.grid, record.run_id)
    write_json_atomic(finite(record.to_dict()), path)
    return path


def parse_record(data) -> tuple[RunRecord | None, str | None]:
    """(record, None) for a parsed file that is a valid record, else (None, why not)."""
    try:
        return RunRecord.from_dict(data), None
    except RecordError as exc:
        return None, str(exc)


def read_json(path: Path) -> tuple[object, str | None]:
    """(the parsed JSON of ``path``, None) or (None, why it is unreadable)."""
    try:
        return json.loads(Path(path).read_text()), None
    except (OSError, ValueError) as exc:
        return None, f"unreadable: {exc}"


def read_run_record(path: Path) -> tuple[RunRecord | None, str | None]:
    """(record, None) or (None, why the file is not a valid record)."""
    data, why = read_json(path)
    return (None, why) if why else parse_record(data)


def read_record(path: Path) -> tuple[dict | None, str | None]:
    """(record, None) or (None, why it was skipped): the record's dict view, the JSON object as the file
    holds it (key order included), valid as a ``RunRecord`` (equal to its ``to_dict()``)."""
    data, why = read_json(path)
    if why is None:
        why = parse_record(data)[1]
    return (None, why) if why else (data, None)


def load_records(results: str | Path, grid: str, warn=None, check=None) -> list[dict]:
    """Every valid record of ``grid`` (dict views, as ``read_record``), sorted by (run id, file name);
    skipped files reported once through ``warn``. ``check(record)`` may name a further reason to skip a valid
    record (None: keep it).

    A run id is counted once: when valid records of one run id are in several files (a copied record), the
    one in ``<run_id>.json`` is kept (else the first file by name) and one more warning names every file."""
    folder = records_dir(results, grid)
    good, skipped = [], []
    for path in sorted(folder.glob("*.json")):
        record, why = read_record(path)
        if record is not None and check is not None:
            why = check(record)
        if why is None:
            good.append((str(record["run_id"]), path.name, record))
        else:
            skipped.append(f"{path} ({why})")
    say = warn or (lambda m: print(m, file=sys.stderr))
    if skipped:
        say(f"warning: skipped {len(skipped)} record(s) of grid {grid!r}: " + "; ".join(skipped))
    by_id: dict[str, list] = {}
    for entry in sorted(good, key=lambda t: t[:2]):
        by_id.setdefault(entry[0], []).append(entry)
    kept, duplicated = [], []
    for run_id, entries in by_id.items():
        keep = next((e for e in entries if e[1] == f"{run_id}.json"), entries[0])
        kept.append(keep)
        if len(entries) > 1:
            files = ", ".join(str(folder / name) for _, name, _ in entries)
            duplicated.append(f"{run_id} in {files} (kept {keep[1]})")
    if duplicated:
        say(f"warning: {len(duplicated)} run id(s) of grid {grid!r} recorded in more than one file, each "
            "counted once: " + "; ".join(duplicated))
    return [record for _, _, record in kept]


def finished_ids(results: str | Path, grid: str) -> set[str]:
    """Run ids of ``grid`` with a record whose status is final (done or diverged)."""
    ids = set()
    for path in records_dir(results, grid).glob("*.json"):
        record, _ = read_run_record(path)
        if record is not None and record.status in ("done", "diverged"):
            ids.add(record.run_id)
    return ids
