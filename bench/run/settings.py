"""The run configuration's schema: every key's default, kind, valid values, ceiling, help text and flag, in one
table (``SETTINGS``), and the kinds of a method's parameters (``method_parameters``).

A run is described by one value per key of ``SETTINGS`` (``bench.run.config.resolve`` fills the defaults and
checks them). A key's ``kind`` is the shape of its value (a string, an integer, a table, ...): a grid file's
values are checked against it before any cell is made (``bench.dispatch.grid_values``). ``valid`` and
``expected`` are the full rule, applied when a config resolves: booleans are not numbers, numbers are finite,
seeds lie in [0, 2**32 - 1]. ``ceiling`` is the largest value the computation can represent: lr and the weight
decays at most 1e3 (published recipes stay below 10; at 1e3 an SGD or AdamW step already moves a float32
weight by ~1e3 times its gradient, or multiplies it by 1 − lr·wd < −1e5, so larger values only overflow or
flip the weights every step); epochs, batch size and re-estimation batches far above any real run and below
where the step counter, the schedules' float progress and the data plan lose their meaning. ``later``: a key
added after the first release whose default every earlier run used; the run id leaves it out while it is at
its default. ``FLAG_KEYS``: the keys with a ``--flag`` of ``python -m bench run``, in the order ``--help``
lists them (the others are set with ``--set key=value``).

No torch here: the command line reads this module for ``--help``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

SEED_MAX = 2**32 - 1  # torch, numpy and the data order's generators all take seeds in [0, 2**32 - 1]


def is_number(value) -> bool:
    """A real number (not a boolean) that converts to a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except OverflowError:  # a TOML integer too large for a float
        return False
    return True


def is_finite(value) -> bool:
    return is_number(value) and math.isfinite(value)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def show(value) -> str:
    """A config value as the user wrote it (TOML spelling for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


@dataclass(frozen=True)
class Kind:
    """The shape of a value, as a message says it: ``one`` ("a string"), ``many`` ("strings")."""

    one: str
    many: str
    test: Callable[[object], bool]
    type: type | None = None  # what a command-line flag's text is converted to (None: kept as text)


STRING = Kind("a string", "strings", lambda v: isinstance(v, str))
INTEGER = Kind("an integer", "integers", is_int, int)
NUMBER = Kind("a number", "numbers", is_number, float)
BOOL = Kind("true or false", "true or false", lambda v: isinstance(v, bool))
TABLE = Kind("a table", "tables", lambda v: isinstance(v, dict))
NUMBERS = Kind("an array of numbers", "arrays of numbers", lambda v: isinstance(v, list) and all(map(is_number, v)))
POLICY = Kind("a string (a preset name) or a table", "strings (a preset name) or tables",
              lambda v: isinstance(v, (str, dict)))
ROBUSTNESS = Kind("true, false or a table", "true, false or tables", lambda v: isinstance(v, (bool, dict)))


def _loaders() -> tuple[str, ...]:
    from bench.data import list_loaders

    return tuple(list_loaders())


@dataclass(frozen=True)
class Setting:
    """One key of a run config. ``valid`` (None: any value of its kind) and ``expected`` say which values are
    accepted; ``choices`` (a tuple, or a function giving one) are named in messages and ``--help``;
    ``optional``: None is a value too (``none_means`` says what it means). A ``NUMBER`` is stored as a float."""

    name: str
    default: object
    kind: Kind
    help: str
    expected: str = ""
    valid: Callable[[object], bool] | None = None
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    optional: bool = False
    none_means: str = "none"
    ceiling: float | None = None
    later: bool = False
    noun: str = ""  # what a string names, in grid messages: " (a model name)"

    def options(self) -> tuple[str, ...] | None:
        return self.choices() if callable(self.choices) else self.choices

    def accepts(self, value) -> bool:
        if value is None:
            return self.optional
        if self.options() is not None:
            return value in self.options()
        return self.kind.test(value) and (self.valid is None or self.valid(value))

    def describe(self) -> str:
        """What a valid value is: 'a positive integer', 'one of sgd, adam, adamw', ..."""
        options = self.options()
        return f"one of {', '.join(options)}" if options is not None else (self.expected or self.kind.one)


def _positive(v) -> bool:
    return v > 0


def _non_negative(v) -> bool:
    return is_finite(v) and v >= 0


def _unit(v) -> bool:
    return is_finite(v) and 0 <= v <= 1


REGISTRY_NAME = "a registry name (a string)"
COUNT = "a positive integer"
SETTINGS: tuple[Setting, ...] = (
    Setting("model", "fmnist-cnn", STRING, "model registry name (python -m bench models)", REGISTRY_NAME, bool,
            noun=" (a model name)"),
    Setting("method", "fp", STRING, "method registry name (python -m bench methods)", REGISTRY_NAME, bool,
            noun=" (a method name)"),
    Setting("method_params", {}, TABLE, "method parameter overrides, e.g. {mu_end = 40} (or --param NAME=VALUE)"),
    Setting("policy", None, POLICY, "which layers to binarize: a preset name (a table of rules: --set policy={...})",
            "a preset name or a table", optional=True, none_means="cnn-default, vit-keep-embed-head for ViTs"),
    Setting("dataset", "fashion-mnist", STRING, "dataset registry name (python -m bench datasets)", REGISTRY_NAME,
            bool, noun=" (a dataset name)"),
    Setting("data_options", {}, TABLE, "dataset options (synthetic: img_size, in_chans, num_classes, ...)"),
    Setting("loader", "memory", STRING, "data loader", choices=_loaders),
    Setting("augment", True, BOOL, "training-set augmentation: random crop (zero padding) + horizontal flip",
            later=True),
    Setting("subset", None, INTEGER, "train on the first N training samples", COUNT, _positive, optional=True,
            none_means="all"),
    Setting("test_subset", None, INTEGER, "evaluate on the first N test samples", COUNT, _positive, optional=True,
            none_means="all"),
    Setting("mode", "e2e", STRING, "e2e trains from scratch, finetune starts from --init", choices=("e2e", "finetune")),
    Setting("init", None, STRING, "fine-tune source: a checkpoint path, run:<id> or timm",
            "a checkpoint path, 'run:<id>', 'parent' or 'timm'", bool, optional=True),
    Setting("model_kwargs", {}, TABLE, "extra model builder arguments (e.g. {patch_size = 4})"),
    Setting("epochs", 4, INTEGER, "passes over the training split", COUNT, _positive, ceiling=100_000),
    Setting("batch_size", 128, INTEGER, "images per step", COUNT, _positive, ceiling=1 << 20),
    Setting("optimizer", "adam", STRING, "optimizer", choices=("sgd", "adam", "adamw")),
    Setting("lr", 1e-3, NUMBER, "peak learning rate", "a finite number > 0", lambda v: is_finite(v) and v > 0,
            ceiling=1e3),
    Setting("momentum", 0.9, NUMBER, "SGD momentum (ignored by adam and adamw)", "a number in [0, 1)",
            lambda v: is_finite(v) and 0 <= v < 1),
    Setting("weight_decay", 0.0, NUMBER, "weight decay (decoupled for adamw, L2 for sgd and adam)",
            "a finite number ≥ 0", _non_negative, ceiling=1e3),
    Setting("latent_weight_decay", 0.0, NUMBER, "weight decay of the binarized latents (0: none, whatever "
            "weight_decay says)", "a finite number ≥ 0", _non_negative, ceiling=1e3, later=True),
    Setting("bn_reestimate", 0, INTEGER, "batches to re-estimate BN statistics of the deployed model on "
            "(final.acc_bn); 0: off", "an integer ≥ 0 (batches)", lambda v: v >= 0, ceiling=1_000_000, later=True),
    Setting("lr_schedule", "cosine", STRING, "per-step lr schedule after the warm-up",
            choices=("cosine", "step", "constant")),
    Setting("warmup_epochs", 0.0, NUMBER, "linear lr warm-up from 0, in epochs", "a finite number ≥ 0",
            _non_negative, ceiling=1e5),
    Setting("step_milestones", [0.5, 0.75], NUMBERS, "step schedule: fractions of training where lr is "
            "multiplied by 0.1", "a list of numbers in [0, 1]", lambda v: all(_unit(m) for m in v)),
    Setting("label_smoothing", 0.0, NUMBER, "cross-entropy label smoothing", "a number in [0, 1]", _unit),
    Setting("seed", 0, INTEGER, "model init, data order and augmentation", f"an integer in [0, {SEED_MAX}]",
            lambda v: 0 <= v <= SEED_MAX),
    Setting("capture", "none", STRING, "none (eager) | compile: the training step through torch.compile (CUDA "
            "graphs on CUDA)", choices=("none", "compile"), later=True),  # bench.run.step.CAPTURES
    Setting("fuse", False, BOOL, "all binarized weights quantized at once per forward (methods.fuse; same bits)",
            later=True),
    Setting("robustness", True, ROBUSTNESS, "corrupted test sets at the end (bench.run.robustness)",
            "true, false or a table {corruptions, severities, subset}", later=True),
)
BY_NAME = {s.name: s for s in SETTINGS}
DEFAULTS = {s.name: s.default for s in SETTINGS}  # read-only: resolve copies it
FLAG_KEYS = ("model", "method", "dataset", "loader", "mode", "init", "optimizer", "lr_schedule", "policy",
             "epochs", "batch_size", "seed", "subset", "test_subset", "lr", "weight_decay", "momentum",
             "warmup_epochs")
assert set(FLAG_KEYS) <= set(BY_NAME)


# -- method parameters: their kinds and bounds, asked of the method class in one place -------------------------
@dataclass(frozen=True)
class Parameter:
    """One parameter of a method class (an override key such as ``mu_end`` included): its ``kind`` and its
    declared ``bound`` (``methods.bounds.Bound``, or None)."""

    name: str
    kind: Kind
    bound: object = None


def method_parameters(cls) -> dict[str, Parameter]:
    """Every parameter method class ``cls`` accepts, with its kind and bound: a string where the parameter's
    default is one (``scale``, ``schedule``, ``lq``, a plugin's option), true or false where it is a boolean, a
    number otherwise (the schedules' ends and numeric constants). ``act_*`` keys (a W1A1 method's activation
    quantizer) follow its activation class. What ``Method.__init__`` accepts and checks, read without making
    one."""
    bounds = cls.parameter_bounds()
    act = cls.activation_class() if hasattr(cls, "activation_class") else None
    act_params = method_parameters(act) if act is not None else {}
    out = {}
    for key in cls.valid_parameters():
        if key.startswith("act_") and key[4:] in act_params:
            out[key] = Parameter(key, act_params[key[4:]].kind, act_params[key[4:]].bound)
            continue
        base = key if key in cls.schedules or key in cls.constants or key in ("scale", "schedule") \
            else key.rsplit("_", 1)[0]
        constant = cls.constants.get(base)
        kind = (STRING if base in ("scale", "schedule") or isinstance(constant, str) else
                BOOL if isinstance(constant, bool) else NUMBER)
        out[key] = Parameter(key, kind, bounds.get(base))
    return out
