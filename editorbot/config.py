"""Configs are dataclasses, loaded from JSON and overridden from the command line.

An unknown key, in a file or an override, is an error naming the key; values are checked
against the field's type, then against the ranges a config class lists in LIMITS and its
`check()` (rules between fields), each error one line with the key, the value and what is
allowed. Configs travel inside checkpoints through `to_dict`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """The values a numeric setting allows: low..high, each end closed unless *_open."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return math.isfinite(value) and above and below

    def __str__(self) -> str:
        lo, hi = f"{self.low:g}", f"{self.high:g}"
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {lo}"
        return f"in {'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)
FRACTION = Range(0, 1)
DROPOUT = Range(0, 1, high_open=True)


class Invalid(Exception):
    """Raised by a config's check() for a rule between fields: the key, its value and what
    is allowed; from_dict turns it into one UserError line."""

    def __init__(self, key: str, value: Any, allowed: str):
        super().__init__(key, value, allowed)
        self.key, self.value, self.allowed = key, value, allowed


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict, *, where: str = "config", saved: bool = False) -> T:
    """Build dataclass `cls` from a dict, recursing into dataclass fields.

    A class may list in RETIRED the keys earlier versions had, with the flag that replaced
    each: a config file that sets one is told that flag; a checkpoint's config (saved=True)
    that holds one loads without it.
    """
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected an object of settings, got {type(data).__name__}")
    retired = getattr(cls, "RETIRED", {})
    old = sorted(set(data) & set(retired))
    if old and not saved:
        raise UserError(f"{where}: '{old[0]}' is no longer a setting; use {retired[old[0]]} instead")
    data = {k: v for k, v in data.items() if k not in retired}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{where}: unknown key '{unknown[0]}' for {cls.__name__}; "
                        f"known keys: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(hints[k], v, _at(where, k), saved) for k, v in data.items()}
    for key, allowed in getattr(cls, "LIMITS", {}).items():
        value = kwargs.get(key)
        if isinstance(value, (int, float)) and value not in allowed:
            raise UserError(f"{_at(where, key)} = {value!r}: must be {allowed}")
    obj = cls(**kwargs)
    if hasattr(obj, "check"):
        try:
            obj.check()
        except Invalid as bad:
            raise UserError(f"{_at(where, bad.key)} = {bad.value!r}: must be {bad.allowed}") from None
    return obj


def _at(where: str, key: str) -> str:
    """A setting's place in an error: the source, then its key path ('cpu.json + --set:
    train.lr'; 'checkpoint config: model.d_model')."""
    return f"{where}.{key}" if ": " in where else f"{where}: {key}"


def _coerce(tp: Any, value: Any, where: str, saved: bool = False) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where, saved=saved)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where, saved)
            except UserError as err:
                errors.append(str(err))
        raise UserError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{where}[{i}]", saved) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected an object, got {value!r}")
        return dict(value)
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"{where}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: expected true or false, got {value!r}")
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    raise UserError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def _parse_override_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare string


def apply_overrides(data: dict, overrides: list[str], *, where: str = "--set") -> dict:
    """Apply 'a.b=value' overrides (value parsed as JSON when it parses) to a nested dict."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise UserError(f"{where} {item}: expected key=value, for example epochs=10")
        key, text = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"{where} {item}: '{part}' is not a group of settings")
        node[parts[-1]] = _parse_override_value(text)
    return data


def load(cls: type[T], path: str | os.PathLike | None = None,
         overrides: list[str] | None = None) -> T:
    """Defaults of `cls`, updated by the JSON file at `path`, then by `overrides`."""
    data = to_dict(cls())
    where = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such config file")
        try:
            loaded = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: expected a JSON object of settings")
        from_dict(cls, loaded, where=str(path))  # names unknown keys with the file's name
        data = _merge(data, loaded)
        where = str(path)
    if overrides:
        data = apply_overrides(data, overrides)
        where = f"{where} + --set"
    return from_dict(cls, data, where=where)


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
