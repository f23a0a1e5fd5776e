"""Checks of what Python callers pass to `llmrec.recommend.Recommender` and `llmrec.api`: the Python door.

The command line and the service parse their input into the right types; a Python caller can pass anything,
and some mistakes run silently wrong (``history="1113"`` iterates as the items 1, 1, 1, 3). Wrong types are a
`TypeError` whose message says what to pass instead; right types with a bad value (``k=0``) a `ValueError`.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["check_histories", "check_history", "check_k", "check_new_items", "check_options", "check_path"]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_k(k: Any, name: str = "k") -> int:
    """k as an int >= 1; bools, floats and other types are a TypeError, k < 1 a ValueError."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        hint = f" (e.g. {name}={int(k)})" if isinstance(k, float) and k.is_integer() else ""
        raise TypeError(f"{name} must be an int >= 1, not {type(k).__name__} {_show(k)}{hint}")
    if k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}")
    return int(k)


def check_history(history: Any, name: str = "history") -> list[str]:
    """A raw-id history (oldest first) as a list of str: a list, tuple or 1-D array of str or int ids.

    A bare string is refused, not read as its characters; so are sets (no order) and other iterables.
    """
    if isinstance(history, str | bytes):
        raise TypeError(f"{name} must be a list of item ids, e.g. [{history!r}], not the string {_show(history)}")
    if isinstance(history, np.ndarray) and history.ndim == 1:
        history = history.tolist()
    if not isinstance(history, Sequence):
        raise TypeError(f"{name} must be a list of item ids (oldest first), not {type(history).__name__}")
    for i, item in enumerate(history):
        if isinstance(item, bool) or not isinstance(item, str | numbers.Integral):
            raise TypeError(f"{name}[{i}]: an item id is a str or an int, not {type(item).__name__} {_show(item)}")
    return [str(item) for item in history]


def check_histories(histories: Any, n_items: int | None = None) -> list[np.ndarray]:
    """`Recommender.recommend_batch`'s histories: a list of internal-id arrays (from `encode_history`), each id
    in 0..n_items (0 is padding) when `n_items` is given."""
    if isinstance(histories, str | bytes | np.ndarray) or not isinstance(histories, Sequence):
        raise TypeError(
            "histories must be a list of histories, each an array of internal item ids, e.g. "
            "[rec.encode_history(['12', '7'])]; for one raw-id history use rec.recommend(history=[...])"
        )
    out = []
    for i, h in enumerate(histories):
        if isinstance(h, str | bytes) or not isinstance(h, Sequence | np.ndarray):
            raise TypeError(
                f"histories[{i}] is {type(h).__name__} {_show(h)}: each history is a list of item ids; "
                f"encode raw ids with rec.encode_history([...]), e.g. [rec.encode_history([{str(h)!r}])]"
            )
        arr = np.asarray(h)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"histories[{i}]: internal item ids are ints (rec.encode_history turns raw ids into them)")
        if n_items is not None and arr.size and (arr.min() < 0 or arr.max() > n_items):
            bad = int(arr[(arr < 0) | (arr > n_items)][0])
            raise ValueError(
                f"histories[{i}]: internal item id {bad} is outside 1..{n_items}, the model's catalogue; "
                "encode raw ids with rec.encode_history([...])"
            )
        out.append(arr.astype(np.int64, copy=False))
    return out


def check_options(diversity: float, query_weight: float, query: Any) -> None:
    """The numeric and text options shared by recommend, recommend_batch and explain."""
    for name, value in (("diversity", diversity), ("query_weight", query_weight)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number in [0, 1], not {type(value).__name__} {_show(value)}")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if query is not None and not isinstance(query, str):
        raise TypeError(f"query must be a str (what you are in the mood for) or None, not {type(query).__name__}")


def check_new_items(new_items: Any, k: int, name: str = "new_items") -> int:
    """The cold-item quota: an int in 0..k (0 = off); a bool or float is a TypeError, a value outside a ValueError."""
    if isinstance(new_items, bool) or not isinstance(new_items, numbers.Integral):
        raise TypeError(f"{name} must be an int in 0..k, not {type(new_items).__name__} {_show(new_items)}")
    n = int(new_items)
    if not 0 <= n <= k:
        raise ValueError(f"{name} must be in 0..k ({k}): the list's last {name} positions hold new items, got {n}")
    return n


def check_path(value: Any, name: str, *, optional: bool = False) -> None:
    """A folder or file argument: a str or os.PathLike (None too when optional)."""
    if value is None and optional:
        return
    if not isinstance(value, str | os.PathLike) or (isinstance(value, str) and not value.strip()):
        raise TypeError(f"{name} must be a path (str or pathlib.Path), not {type(value).__name__} {_show(value)}")
