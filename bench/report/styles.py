"""How methods and leaderboard columns are named, ordered and drawn.

The single source is ``STYLES`` below, keyed by registry key: each method's display name (``label``), its
matplotlib ``color`` and ``marker``. A method not in it (a plugin) may suggest its own through its class's
optional ``style`` field (``methods.Method.style``: a dict with any of ``label``, ``color``, ``marker`` and
``symbols``, a symbol per parameter for axis labels); a suggestion is not inherited by a subclass registered
under another key. What neither gives is derived: the registry key as the label, a colour and marker picked
from the key, and a parameter named after a Greek letter ("beta") shown as the letter.

Order: the built-in methods in the order ``methods.builtin`` defines them (fp, bc, pc, rpc, pq, bnn, bnn+,
bnn++: the paper's order), then every other method alphabetically.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

FP = "\x00fp"  # the column id of the full-precision baseline in a leaderboard
# method parameters that are training settings, not quantizer parameters: never drawn as a schedule
SETTINGS = ("clip", "freeze_at")
# for methods whose class declares no colour or marker: colours far from the built-ins' (black, and tab10's
# blue, orange, green, red, purple, brown, pink): tab10's cyan, olive and grey, then navy, moss, gold, teal
FALLBACK_COLORS = ("#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#e7ba52", "#006d6f")
FALLBACK_MARKERS = ("h", "p", "<", ">", "d", "8", "H")
GREEK_NAMES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda",
               "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega")
GREEK = {name: chr(0x3B1 + i + (1 if i >= 17 else 0)) for i, name in enumerate(GREEK_NAMES)}  # skips final ς


STYLES: dict[str, dict[str, str]] = {
    key: {"label": label, "color": color, "marker": marker} for key, label, color, marker in (
        ("fp", "FP", "#000000", "s"), ("bc", "BC", "#1f77b4", "o"), ("pc", "PC", "#ff7f0e", "^"),
        ("rpc", "rPC", "#2ca02c", "v"), ("pq", "PQ", "#d62728", "D"), ("bnn", "BNN", "#9467bd", "P"),
        ("bnn+", "BNN+", "#8c564b", "X"), ("bnn++", "BNN++", "#e377c2", "*"),
        # the BiBench W1A1 methods
        ("bnn-w1a1", "BNN-W1A1", "#17becf", "o"), ("xnor", "XNOR", "#bcbd22", "s"),
        ("dorefa", "DoReFa", "#7f7f7f", "^"), ("bireal", "Bi-Real", "#393b79", "v"),
        ("xnor++", "XNOR++", "#8c6d31", "D"), ("reactnet", "ReActNet", "#843c39", "P"),
        ("recu", "ReCU", "#637939", "X"), ("fda", "FDA", "#7b4173", "*"),
    )
}


def method_class(method: str):
    """The class registered as ``method``, or None (a plugin not loaded here)."""
    import methods

    try:
        return methods.get_method_class(method)
    except methods.MethodError:
        return None


def builtin_order() -> tuple[str, ...]:
    """The registry keys of the built-in methods, in the order ``methods.builtin`` defines their classes."""
    import methods
    import methods.builtin as builtin

    return tuple(obj.__dict__["name"] for obj in vars(builtin).values()
                 if isinstance(obj, type) and issubclass(obj, methods.Method) and obj.__module__ == builtin.__name__
                 and obj.__dict__.get("name") and method_class(obj.__dict__["name"]) is obj)


def method_sort_key(method: str):
    """Built-in methods first, in their order (``builtin_order``), then the others alphabetically."""
    order = builtin_order()
    return (order.index(method), "") if method in order else (len(order), method)


def suggested_style(method: str) -> dict:
    """The ``style`` the class registered as ``method`` suggests, itself or through a base class that is not
    registered under another key (a mixin); {} when the method is not registered here or suggests nothing."""
    cls = method_class(method)
    for klass in (cls.__mro__ if cls is not None else ()):
        if klass is not cls and klass.__dict__.get("name"):
            return {}  # a registered ancestor's label, colour or marker would tell two methods apart by nothing
        if klass.__dict__.get("style"):
            return klass.__dict__["style"]
    return {}


def method_attribute(method: str, name: str):
    """The presentation attribute ``name`` (``label``, ``color``, ``marker``) of ``method``: ``STYLES``, else
    its class's suggestion (``suggested_style``), else None."""
    return STYLES.get(method, {}).get(name) or suggested_style(method).get(name)


def method_label(method: str) -> str:
    """The display name of ``method``: its ``label`` (FP, BC, PC, rPC, PQ, BNN, BNN+, BNN++), else the key."""
    return method_attribute(method, "label") or method


def column_label(column_key: str, column) -> str:
    """The header of a leaderboard column: FP, a method's label (column key ``method``), else ``key=value``."""
    if column == FP:
        return "FP"
    if column_key == "method":
        return method_label(column)
    return f"{column_key}={column}"


@dataclass(frozen=True)
class Style:
    """How one method is drawn: display name, matplotlib colour and marker."""

    label: str
    color: str
    marker: str


def method_style(method: str) -> Style:
    """The style of ``method`` in every figure: its ``label``, ``color`` and ``marker``; where none is given (or
    the method is not registered here), a colour and a marker picked by the SHA-256 of the
    key from ``FALLBACK_COLORS`` / ``FALLBACK_MARKERS``, the same on every machine and in every run."""
    digest = hashlib.sha256(method.encode("utf-8")).digest()
    return Style(method_label(method),
                 method_attribute(method, "color") or FALLBACK_COLORS[digest[0] % len(FALLBACK_COLORS)],
                 method_attribute(method, "marker") or FALLBACK_MARKERS[digest[1] % len(FALLBACK_MARKERS)])


def param_symbol(method: str, param: str) -> str:
    """The symbol of parameter ``param`` of ``method``: from the ``symbols`` its class suggests (``style``), else
    the Greek letter a parameter named after one stands for ("beta" -> β), else the name."""
    return (suggested_style(method).get("symbols") or {}).get(param) or GREEK.get(param, param)
