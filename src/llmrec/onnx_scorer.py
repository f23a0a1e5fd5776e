"""Serve an exported ``scorer.onnx`` from raw item ids with onnxruntime: no llmrec, no torch.

``llmrec export --onnx`` copies this file into the export folder as ``onnx_scorer.py``, beside ``scorer.onnx``,
``onnx.json`` (the graph's shapes) and ``onnx_items.json`` (the raw item ids, in the graph's column order). It
needs only the standard library, numpy and onnxruntime::

    from onnx_scorer import OnnxScorer              # or: from llmrec.onnx_scorer import OnnxScorer

    scorer = OnnxScorer("deploy/model")
    scorer.recommend(["50", "181"], k=10)           # [("172", 9.81), ...]: raw id and score, best first
    scorer.recommend_batch([["50"], ["1", "7"]], k=5, exclude_seen=False)
    scorer.scores([["50", "181"]])                  # [B, n_items + 1] float32; column 0 is padding (-inf)

It does what the graph leaves to the caller: raw ids to the graph's item ids (an unknown id is a KeyError naming
it), the most recent ``max_seq_len`` items kept, left padding with 0, and (by default) the history's own items
left out of the top-k, as ``llmrec recommend`` does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["OnnxScorer"]

ITEMS_FILE = "onnx_items.json"  # raw item ids; the id at position i is the graph's item i + 1 (0 is padding)


class OnnxScorer:
    """Raw-id histories in, scores or top-k raw ids out, through onnxruntime on an export folder."""

    def __init__(self, folder: str | Path, *, providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        meta = json.loads((folder / "onnx.json").read_text(encoding="utf-8"))
        self.max_seq_len = int(meta["max_seq_len"])
        self.raw_ids: list[str] = [str(i) for i in json.loads((folder / ITEMS_FILE).read_text(encoding="utf-8"))]
        self.item_index = {raw: i + 1 for i, raw in enumerate(self.raw_ids)}
        self.input_name = str(meta["input"]["name"])
        self.output_name = str(meta["output"]["name"])
        self.session: Any = ort.InferenceSession(str(folder / meta["file"]), providers=list(providers))

    def encode(self, histories: Sequence[Sequence[str]]) -> npt.NDArray[np.int64]:
        """Raw-id histories (oldest first) -> the graph's input [B, max_seq_len]: the most recent items, left-padded."""
        if isinstance(histories, str) or any(isinstance(h, str) for h in histories):
            raise TypeError("histories is a list of histories, each a list of raw item ids (not a bare string)")
        out = np.zeros((len(histories), self.max_seq_len), dtype=np.int64)
        for row, history in enumerate(histories):
            unknown = [str(h) for h in history if str(h) not in self.item_index]
            if unknown:
                raise KeyError(f"unknown item id(s): {', '.join(unknown[:10])}")
            ids = [self.item_index[str(h)] for h in history][-self.max_seq_len :]
            if ids:
                out[row, -len(ids) :] = ids
        return out

    def scores(self, histories: Sequence[Sequence[str]]) -> npt.NDArray[np.float32]:
        """[B, n_items + 1] scores; column i is item ``raw_ids[i - 1]``, column 0 (padding) is -inf."""
        result = self.session.run([self.output_name], {self.input_name: self.encode(histories)})[0]
        return np.asarray(result, dtype=np.float32)

    def recommend_batch(
        self, histories: Sequence[Sequence[str]], k: int = 10, *, exclude_seen: bool = True
    ) -> list[list[tuple[str, float]]]:
        """Top-k (raw id, score) per history, best first; exclude_seen leaves the history's items out."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        s = self.scores(histories)
        out = []
        for row, history in zip(s, histories, strict=True):
            row = row.copy()
            row[0] = -np.inf
            if exclude_seen:
                row[[self.item_index[str(h)] for h in history]] = -np.inf
            n = min(k, int(np.isfinite(row).sum()))
            top = np.argsort(-row, kind="stable")[:n]
            out.append([(self.raw_ids[i - 1], float(row[i])) for i in top])
        return out

    def recommend(self, history: Sequence[str], k: int = 10, *, exclude_seen: bool = True) -> list[tuple[str, float]]:
        """Top-k (raw id, score) for one history of raw item ids, best first."""
        return self.recommend_batch([history], k, exclude_seen=exclude_seen)[0]
