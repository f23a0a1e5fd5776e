"""Experiment configuration: TOML files with sections, `--set section.key=value` overrides, typed dataclasses.

Precedence: dataclass defaults < the TOML file < `--set` overrides. Unknown sections or keys raise an error that
names them (a typo never silently becomes a default). Values given with --set are parsed as TOML values
(`3e-4`, `true`, `"rotary"`; a bare word is taken as a string) and must match the field's type.

Ranges: every config dataclass checks its fields in ``__post_init__`` with `check_range`, which raises a
`SettingError` naming the field (``max_seq_len: must be between 1 and 16384, got 0``); `build` adds the section
(``model.max_seq_len: ...``), so a bad value is refused before any data is read or anything is written.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "ELSEWHERE",
    "MAX_SEQ_LEN",
    "QUERY_WEIGHT",
    "SettingError",
    "build",
    "check_range",
    "dump_toml",
    "load_toml",
    "merge_sections",
    "parse_overrides",
    "suggest",
]

T = TypeVar("T")

# The longest history any model reads. Published sequential recommenders read 50-200 items and HSTU-scale runs
# 8192; 16384 leaves room above those, and the training memory check (`llmrec.training.memory`) judges the rest.
MAX_SEQ_LEN = 16384

# The default weight of a text query against the history (`llmrec.rerank.blend_query`: 0 = history only, 1 = query
# only), for Recommender, the CLI and the service alike. Chosen on Beauty's validation queries
# (benchmarks/intent_beauty_valid_queries.json): the smallest weight whose precision@10 reaches 0.8 (docs/trust.md).
QUERY_WEIGHT = 0.85


class SettingError(ValueError):
    """A setting outside its range: ``<key>: <reason>``. `build` prefixes the section (``model.max_seq_len``)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def check_range(
    key: str, value: float, low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> None:
    """Raise `SettingError` naming `key` unless `value` is a finite number in the range (closed ends by default).

    Integer ranges read ``must be between 1 and 4096``; others ``must be in [0, 1)``, ``must be > 0`` and so on;
    NaN and ±inf are always refused (``lr = inf`` would only surface later as NaN scores).
    """
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (high is None or (value < high if high_open else value <= high))
    )
    if ok:
        return
    if high is None:
        want = f"{'>' if low_open else '>='} {_num(low)}"
    elif isinstance(value, int) and not (low_open or high_open) and float(low).is_integer() and float(high).is_integer():
        want = f"between {_num(low)} and {_num(high)}"
    else:
        want = f"in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    finite = " and finite" if isinstance(value, float) and not math.isfinite(value) else ""
    raise SettingError(key, f"must be {want}{finite}, got {value!r}")


def load_toml(path: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: invalid TOML: {e}") from e
    for key, val in data.items():
        if not isinstance(val, dict):
            raise ValueError(f"{path}: top-level key {key!r} must be a [section]")
    return data


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """["train.lr=1e-3", "model.d_model=128"] -> {"train": {"lr": 0.001}, "model": {"d_model": 128}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            raise ValueError(f"--set {item!r}: expected section.key=value, e.g. train.lr=1e-3")
        out.setdefault(section, {})[name] = _parse_value(value.strip())
    return out


def merge_sections(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
    return merged


_SCALARS: dict[str, Any] = {"int": 0, "float": 0.0, "str": "", "bool": False}


def _check_type(cls: type, name: str, value: Any, default: Any, where: str, annotation: str = "") -> Any:
    if value is None:
        return value
    if default is None or default is dataclasses.MISSING:
        # `X | None` fields and required fields: check against the annotation's scalar type when there is one.
        base = annotation.replace(" ", "").replace("|None", "")
        if base not in _SCALARS:
            return value
        default = _SCALARS[base]
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}.{name}: expected true/false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if not isinstance(value, type(default)) or isinstance(value, bool):  # bool is an int in Python, not in TOML
        raise ValueError(f"{where}.{name}: expected {type(default).__name__}, got {value!r}")
    return value


# Keys people write for a setting that lives elsewhere (another section, or a keyword of llmrec.train).
ELSEWHERE = {
    "threads": "train.num_threads (threads= in llmrec.train / llmrec.evaluate, --threads on the command line)",
    "num_threads": "train.num_threads (threads= in llmrec.train)",
    "n_threads": "train.num_threads (threads= in llmrec.train)",
    "learning_rate": "train.lr",
    "epochs": "train.epochs",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
    "device": "device= in llmrec.train (--device on the command line)",
}


def suggest(section: str, key: str, settable: list[str]) -> str:
    """``did you mean ...?`` for an unknown key: a close name in the same section (difflib), or where that setting
    lives when it is not a key of this section (`ELSEWHERE`); "" when nothing is close."""
    import difflib

    where = ELSEWHERE.get(key)
    if where is not None:  # first: a name close to another section's key is not a typo of this one's
        return f"{section}.{key}: did you mean {where}?"
    close = difflib.get_close_matches(key, settable, n=2, cutoff=0.6)
    return f"{section}.{key}: did you mean {' or '.join(f'{section}.{c}' for c in close)}?" if close else ""


def build(
    cls: type[T],
    values: dict[str, Any],
    *,
    section: str,
    allowed_extra: tuple[str, ...] = (),
    derived: dict[str, Any] | None = None,
) -> T:
    """Instantiate dataclass `cls` from `values`; unknown keys raise ValueError naming `section.key`.

    allowed_extra: keys the caller consumes itself (accepted, not passed on). derived: field values that come from
    the data (e.g. n_items); a user value for one of them is refused, and they are not listed as settable.
    """
    derived = derived or {}
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if given := [k for k in values if k in derived]:
        raise ValueError(f"{', '.join(f'{section}.{k}' for k in given)}: derived from the data, cannot be set")
    unknown = [k for k in values if k not in fields and k not in allowed_extra]
    if unknown:
        settable = sorted({*fields, *allowed_extra} - set(derived))
        hints = "".join(f"; {hint}" for k in unknown if (hint := suggest(section, k, settable)))
        raise ValueError(
            f"unknown config key(s): {', '.join(f'{section}.{k}' for k in unknown)}{hints}; known: {', '.join(settable)}"
        )
    kwargs = dict(derived)
    for k, v in values.items():
        if k in allowed_extra:
            continue
        f = fields[k]
        default = f.default if f.default is not dataclasses.MISSING else None
        kwargs[k] = _check_type(cls, k, v, default, section, str(f.type))
    try:
        return cls(**kwargs)
    except SettingError as e:
        raise SettingError(f"{section}.{e.key}", e.reason) from None


def dump_toml(sections: dict[str, dict[str, Any]], header: str = "") -> str:
    """Write flat sections as TOML (values: str, bool, int, float, lists of those)."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return repr(v)

    lines = [f"# {h}" if h else "#" for h in header.splitlines()] if header else []
    for section, values in sections.items():
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {fmt(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines).lstrip("\n") + "\n"
