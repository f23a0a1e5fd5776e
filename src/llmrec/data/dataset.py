"""PreparedDataset: the output of data preparation, saved as Parquet + manifest.json and loadable alone.

Layout of a prepared directory::

    manifest.json       source + checksums, filters, split protocol, statistics, file checksums
    sequences.parquet   user_idx, items (list of item_idx, chronological), times (list of int64)
    users.parquet       user_idx, user (raw id), role, n_train, valid_pos, test_pos, [+ user attributes]
    items.parquet       item_idx (1..n_items; 0 is padding), item (raw id), title, text, categories, is_cold

The split is three integers per user: training uses ``items[:n_train]`` (cold items removed), the validation
example is ``(items[:valid_pos], items[valid_pos])`` and the test example ``(items[:test_pos], items[test_pos])``;
-1 means "no such example". Cold-start users (role ``cold_valid`` / ``cold_test``) have n_train = 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from llmrec.atomic import atomic_directory
from llmrec.data.registry import sha256_file
from llmrec.errors import ChecksumError, artifact_file, read_json

__all__ = ["EvalExamples", "PreparedDataset", "sequence_stats", "split_lists", "write_prepared", "write_sequences"]

_FILES = ("sequences.parquet", "users.parquet", "items.parquet")


@dataclass(frozen=True)
class EvalExamples:
    """One next-item prediction per user: histories[i] (oldest first) → targets[i]."""

    user_idx: np.ndarray  # [N] int64
    histories: list[np.ndarray]  # N arrays of item_idx
    targets: np.ndarray  # [N] int64 item_idx

    def __len__(self) -> int:
        return len(self.targets)


def split_lists(items: pl.Series, times: pl.Series) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two list columns -> per-row int64 numpy views, without materialising Python objects per event."""
    lengths = items.list.len().to_numpy()
    cuts = np.cumsum(lengths)[:-1]
    flat_items = items.explode().to_numpy().astype(np.int64, copy=False)
    flat_times = times.explode().to_numpy().astype(np.int64, copy=False)
    return np.split(flat_items, cuts), np.split(flat_times, cuts)


def _quantiles(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {}
    qs = np.quantile(x, [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0])
    out = {k: float(v) for k, v in zip(("min", "p25", "p50", "p75", "p90", "p99", "max"), qs, strict=True)}
    out["mean"] = float(x.mean())
    return out


def sequence_stats(
    *, lengths: np.ndarray, item_counts: np.ndarray, train_events: int, users: pl.DataFrame, n_cold_items: int
) -> dict[str, Any]:
    """The manifest's statistics from per-user sequence lengths [n_users], per-item counts [n_items] and the split.

    One function for the in-memory and the streaming preparation, so both write the same numbers.
    """
    n_inter = int(lengths.sum())
    n_users, n_items = len(lengths), len(item_counts)
    roles = users["role"].value_counts().sort("role")
    return {
        "users": n_users,
        "items": n_items,
        "interactions": n_inter,
        "density": n_inter / max(1, n_users * n_items),
        "sequence_length": _quantiles(lengths),
        "item_popularity": _quantiles(item_counts),
        "train_events": train_events,
        "valid_examples": int((users["valid_pos"] >= 0).sum()),
        "test_examples": int((users["test_pos"] >= 0).sum()),
        "cold_items": n_cold_items,
        "roles": dict(zip(roles["role"].to_list(), roles["count"].to_list(), strict=True)),
    }


def write_sequences(folder: Path, frames: Iterable[pl.DataFrame]) -> None:
    """Write sequences.parquet (user_idx, items, times) from frames in user_idx order, one row group per frame.

    One writer for both preparation engines (pyarrow's, as Polars cannot append to a Parquet file), so the same
    sequences give the same bytes whichever engine prepared them.
    """
    import pyarrow.parquet as pq

    writer = None
    try:
        for frame in frames:
            table = frame.select("user_idx", "items", "times").rechunk().to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(folder / "sequences.parquet", table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def write_prepared(folder: Path, users: pl.DataFrame, items: pl.DataFrame, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write users.parquet, items.parquet and, last, manifest.json with the checksums of the three data files
    (sequences.parquet must already be there); returns the manifest as written."""
    users.write_parquet(folder / "users.parquet")
    items.write_parquet(folder / "items.parquet")
    manifest = {**manifest, "files": {f: sha256_file(folder / f) for f in _FILES}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


class PreparedDataset:
    """Per-user chronological sequences with their split, id maps and item metadata."""

    def __init__(
        self,
        *,
        sequences: list[np.ndarray],
        times: list[np.ndarray],
        users: pl.DataFrame,
        items: pl.DataFrame,
        manifest: dict[str, Any],
    ) -> None:
        if len(sequences) != users.height:
            raise ValueError(f"{len(sequences)} sequences but {users.height} users")
        self.sequences = sequences
        self.times = times
        self.users = users
        self.items = items
        self.manifest = manifest
        self._n_train = users["n_train"].to_numpy()
        self._valid_pos = users["valid_pos"].to_numpy()
        self._test_pos = users["test_pos"].to_numpy()
        self._is_cold_item = np.concatenate([[False], items["is_cold"].to_numpy()])  # [n_items + 1]
        self._item_index: dict[str, int] | None = None
        self._user_index: dict[str, int] | None = None

    def __repr__(self) -> str:
        """``PreparedDataset('ml-100k': 943 users, 1,682 items, 100,000 events; split loo; domain movies)``."""
        split = self.manifest.get("split", {})
        protocol = split.get("protocol") if isinstance(split, dict) else split
        events = int(sum(len(s) for s in self.sequences))
        return (
            f"PreparedDataset({self.name!r}: {self.n_users:,} users, {self.n_items:,} items, {events:,} events"
            f"{f'; split {protocol}' if protocol else ''}; domain {self.domain})"
        )

    # ---- sizes and maps -------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def n_items(self) -> int:
        return self.items.height

    @property
    def domain(self) -> str:
        return str(self.manifest.get("domain", "generic"))

    @property
    def name(self) -> str:
        """The dataset's name for titles: manifest `name` (older folders: the registry name, else "dataset")."""
        return str(self.manifest.get("name") or self.manifest.get("source", {}).get("dataset") or "dataset")

    @property
    def is_cold_item(self) -> np.ndarray:
        """[n_items + 1] bool; index 0 (padding) is False."""
        return self._is_cold_item

    def item_index(self, raw_item_id: str) -> int:
        if self._item_index is None:
            self._item_index = dict(zip(self.items["item"].to_list(), self.items["item_idx"].to_list(), strict=True))
        return self._item_index[str(raw_item_id)]

    def user_index(self, raw_user_id: str) -> int:
        if self._user_index is None:
            self._user_index = dict(zip(self.users["user"].to_list(), self.users["user_idx"].to_list(), strict=True))
        return self._user_index[str(raw_user_id)]

    def raw_item_ids(self) -> list[str]:
        """Raw id of each item_idx 1..n_items (position i holds item_idx i + 1)."""
        return self.items["item"].to_list()

    # ---- splits ---------------------------------------------------------------------------------
    def train_sequences(self, through: str = "train") -> list[np.ndarray]:
        """Training sequence of every user that has one (cold items removed); empty ones are skipped.

        through="valid" also includes each user's validation target (for a final refit after model selection);
        test targets are never included.
        """
        if through not in ("train", "valid"):
            raise ValueError(f"through must be 'train' or 'valid', got {through!r}")
        ends = self._n_train
        if through == "valid":
            ends = np.where(self._valid_pos >= 0, np.maximum(self._n_train, self._valid_pos + 1), self._n_train)
        out = []
        for seq, n in zip(self.sequences, ends, strict=True):
            s = seq[:n]
            s = s[~self._is_cold_item[s]]
            if len(s):
                out.append(s)
        return out

    def eval_examples(self, split: str) -> EvalExamples:
        """Validation or test examples ("valid" | "test") of the warm users."""
        pos = {"valid": self._valid_pos, "test": self._test_pos}[split]
        users = np.flatnonzero(pos >= 0)
        return EvalExamples(
            user_idx=users.astype(np.int64),
            histories=[self.sequences[u][: pos[u]] for u in users],
            targets=np.array([self.sequences[u][pos[u]] for u in users], dtype=np.int64),
        )

    def user_history(self, user_idx: int, split: str = "all") -> np.ndarray:
        """A user's history for recommending: everything ("all"), or what precedes the valid/test target."""
        seq = self.sequences[user_idx]
        if split == "all":
            return seq
        p = {"valid": self._valid_pos, "test": self._test_pos}[split][user_idx]
        return seq[:p] if p >= 0 else seq

    def cold_users(self, role: str) -> tuple[np.ndarray, list[np.ndarray]]:
        """(user_idx, full sequences) of the cold-start users with `role` ("cold_valid" | "cold_test")."""
        users = np.flatnonzero((self.users["role"] == role).to_numpy())
        return users.astype(np.int64), [self.sequences[u] for u in users]

    def item_popularity(self) -> np.ndarray:
        """[n_items + 1] count of each item in the training sequences."""
        seqs = self.train_sequences()
        flat = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        return np.bincount(flat, minlength=self.n_items + 1)

    # ---- statistics -----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        lengths = np.array([len(s) for s in self.sequences], dtype=np.int64)
        flat = np.concatenate(self.sequences) if self.sequences else np.zeros(0, dtype=np.int64)
        return sequence_stats(
            lengths=lengths,
            item_counts=np.bincount(flat, minlength=self.n_items + 1)[1:],
            train_events=int(sum(len(s) for s in self.train_sequences())),
            users=self.users,
            n_cold_items=int(self._is_cold_item.sum()),
        )

    def coverage(self) -> dict[str, Any]:
        """What the catalogue says and when the events happened (``llmrec data stats``): ``catalogue`` counts the
        items with a title, a text, at least one category (of ``items``); ``time_range`` the first and last event
        time (``min``/``max`` in the events' unit; Unix seconds when the times were ISO-8601 or datetimes)."""
        items = self.items
        has = {
            "title": items["title"].is_not_null().sum() if "title" in items.columns else 0,
            "text": items["text"].is_not_null().sum() if "text" in items.columns else 0,
            "categories": (items["categories"].list.len() > 0).sum() if "categories" in items.columns else 0,
        }
        flat = np.concatenate(self.times) if self.times else np.zeros(0, dtype=np.int64)
        span = {"min": int(flat.min()), "max": int(flat.max())} if flat.size else {"min": None, "max": None}
        return {"catalogue": {"items": self.n_items, **{k: int(v) for k, v in has.items()}}, "time_range": span}

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, out: str | Path) -> Path:
        """Write to `out` atomically: a temporary sibling directory renamed into place."""
        with atomic_directory(out, kind="dataset") as tmp:
            lengths = np.array([len(s) for s in self.sequences], dtype=np.int64)
            frame = (
                pl.DataFrame(
                    {
                        "user_idx": np.repeat(np.arange(self.n_users, dtype=np.int32), lengths),
                        "items": np.concatenate(self.sequences).astype(np.int32) if self.n_users else np.zeros(0, np.int32),
                        "times": np.concatenate(self.times) if self.n_users else np.zeros(0, np.int64),
                    }
                )
                .group_by("user_idx", maintain_order=True)
                .agg("items", "times")
            )
            write_sequences(tmp, [frame])
            write_prepared(tmp, self.users, self.items, self.manifest)
        return Path(out)

    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True) -> PreparedDataset:
        from llmrec.atomic import recover_set_aside

        path = Path(path)
        recover_set_aside(path.absolute())  # a replacement stopped half-way by kill -9 is undone first
        mpath = path / "manifest.json"
        if not mpath.is_file():
            raise FileNotFoundError(f"{path}: not a prepared dataset (no manifest.json); run `llmrec data prepare` first")
        manifest = read_json(mpath)
        if verify:
            for f, want in manifest.get("files", {}).items():
                with artifact_file(path / f):
                    got = sha256_file(path / f)
                if got != want:
                    raise ChecksumError(f"{path / f}: checksum mismatch with manifest.json (expected {want}, got {got})")
        with artifact_file(path / "sequences.parquet"):
            seqs = pl.read_parquet(path / "sequences.parquet").sort("user_idx")
            sequences, times = split_lists(seqs["items"], seqs["times"])
        with artifact_file(path / "users.parquet"):
            users = pl.read_parquet(path / "users.parquet")
            users.select("user_idx", "user", "role", "n_train", "valid_pos", "test_pos")  # the split columns
            if users.height != len(sequences):
                raise ValueError(f"{users.height} users but {len(sequences)} sequences in sequences.parquet")
        with artifact_file(path / "items.parquet"):
            items = pl.read_parquet(path / "items.parquet")
            items.select("item_idx", "item", "is_cold")
        return cls(sequences=sequences, times=times, users=users, items=items, manifest=manifest)
