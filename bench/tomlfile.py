"""TOML input on the ground floor: a file (``load_toml``) and one ``key=value`` assignment of the command line
(``parse_assignment``), every problem a one-line ``UserError`` naming the file and line or the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from bench.errors import UserError


def load_toml(path: str | Path) -> dict:
    """Parse a TOML file; a syntax error becomes a UserError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+), column (\d+)", str(exc))
        line = found.group(1) if found else str(max(1, len(text.rstrip().splitlines())))
        raise UserError(f"{path}: line {line}: malformed TOML: {_reason(exc)}") from None


def _reason(exc: tomllib.TOMLDecodeError) -> str:
    """tomllib's message without its '(at line L, column C)' position."""
    return re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))


def parse_assignment(text: str, where: str) -> tuple[str, object]:
    """'key=value' with a TOML value (bare words are strings): ('key', value).

    A value that starts like a TOML array, table or string but does not parse is an error, not a string."""
    key, eq, value = (part.strip() for part in text.partition("="))
    if not eq or not key:
        raise UserError(f"{where}: expected KEY=VALUE, got {text!r}")
    if not value:
        raise UserError(f"{where}: {key}: missing value (expected {key}=VALUE)")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError as exc:
        if value[0] in "[{\"'" or "\n" in value:
            raise UserError(f"{where}: {key}: malformed TOML value {value!r}: {_reason(exc)}") from None
        parsed = value
    return key, parsed
