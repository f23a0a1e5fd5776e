"""Adding a model type is one file and one registry line (docs/architecture.md, "Adding a model").

A throwaway model type, written to a temporary module here (a spec and a tiny mean-of-item-embeddings scorer),
is registered in ``llmrec.models.MODELS`` and then trained, evaluated, recommended from, explained and served
through the public doors, with no other edit anywhere.
"""

from __future__ import annotations

import importlib
import math
import sys
import textwrap
from pathlib import Path

import pytest

from llmrec.data import PreparedDataset

MODEL_FILE = '''
"""MeanRec: the mean of the history's item embeddings, scored against the (tied) item table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from llmrec.models.spec import DatasetMeta, ModelSpec
from llmrec.types import PAD_ID, SeqBatch


@dataclass(frozen=True, kw_only=True)
class MeanRecConfig:
    n_items: int  # written by data preparation
    max_seq_len: int = 8  # most recent items read
    d_model: int = 16  # width

    def __post_init__(self) -> None:
        if self.d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {self.d_model}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MeanRecOutput:
    logits: torch.Tensor | None
    loss: torch.Tensor | None = None


class MeanRec(nn.Module):
    model_type = "mean-rec"
    config: MeanRecConfig

    def __init__(self, config: MeanRecConfig) -> None:
        super().__init__()
        self.config = config
        self.item_emb = nn.Embedding(config.n_items + 1, config.d_model, padding_idx=PAD_ID)

    @property
    def max_seq_len(self) -> int:
        return self.config.max_seq_len

    @property
    def n_items(self) -> int:
        return self.config.n_items

    def item_table(self) -> torch.Tensor:
        return self.item_emb.weight  # [V+1, D]

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        ids = item_ids[:, -self.max_seq_len :]
        real = (ids != PAD_ID).unsqueeze(-1).float()  # [B, L, 1]
        return (self.item_emb(ids) * real).cumsum(1) / real.cumsum(1).clamp_min(1)  # running mean [B, L, D]

    def forward(self, batch: SeqBatch) -> MeanRecOutput:
        h = self.encode(batch.item_ids)  # [B, L, D]
        logits = h @ self.item_table().T  # [B, L, V+1]
        logits[..., PAD_ID] = float("-inf")
        if batch.targets is None:
            return MeanRecOutput(logits[:, -1])
        targets = batch.targets[:, -h.shape[1] :]
        real = targets != PAD_ID
        return MeanRecOutput(None, F.cross_entropy(logits[real], targets[real]))

    @torch.no_grad()
    def score(self, item_ids: torch.Tensor) -> torch.Tensor:
        logits = self.forward(SeqBatch(item_ids=item_ids)).logits
        assert logits is not None
        return logits

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"model_type": self.model_type, **self.config.to_dict()}))
        save_file(self.state_dict(), str(path / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Self:
        cfg = json.loads((Path(path) / "config.json").read_text())
        cfg.pop("model_type")
        model = cls(MeanRecConfig(**cfg))
        model.load_state_dict(load_file(str(Path(path) / "model.safetensors")))
        return model.eval()


def build(config: MeanRecConfig, meta: DatasetMeta) -> MeanRec:
    return MeanRec(config)


SPEC = ModelSpec("mean-rec", MeanRec, MeanRecConfig, build, presets={"mean-rec-wide": {"d_model": 32}})
'''


@pytest.fixture
def mean_rec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """The throwaway model file, imported from a temporary folder, with its one registry line."""
    import llmrec.models

    folder = tmp_path / "throwaway"
    folder.mkdir()
    (folder / "mean_rec_model.py").write_text(textwrap.dedent(MODEL_FILE))
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module("mean_rec_model")
    monkeypatch.setitem(llmrec.models.MODELS, "mean-rec", lambda: module.SPEC)
    monkeypatch.setitem(llmrec.models.PRESETS, "mean-rec-wide", "mean-rec")
    yield module
    sys.modules.pop("mean_rec_model", None)


def test_a_new_model_type_trains_evaluates_recommends_explains_and_serves(
    mean_rec: object, tiny_prepared: PreparedDataset, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    import llmrec
    from llmrec.models import model_spec
    from llmrec.serve import create_app

    assert model_spec("mean-rec").capabilities() == ("Trainable", "ItemEmbeddingModel", "Adaptable")
    data = tiny_prepared.save(tmp_path / "data")
    with pytest.raises(ValueError, match=r"model\.d_modle"):  # settings are checked by its config class
        llmrec.train(data, tmp_path / "bad", model="mean-rec", config={"model": {"d_modle": 8}})
    with pytest.raises(ValueError, match="d_model must be >= 1"):
        llmrec.train(data, tmp_path / "bad", model="mean-rec", config={"model": {"d_model": 0}})
    assert not (tmp_path / "bad").exists()

    rec = llmrec.train(data, tmp_path / "mean", model="mean-rec", config={"train": {"epochs": 2, "batch_size": 16}})
    assert type(rec.model).__name__ == "MeanRec"
    wide = llmrec.train(data, tmp_path / "wide", model="mean-rec-wide", config={"train": {"epochs": 1}})
    assert wide.model.config.d_model == 32  # the preset

    metrics = llmrec.evaluate(tmp_path / "mean")
    assert any(math.isfinite(v) for v in _numbers(metrics))

    history = [str(i) for i in (3, 7, 11)]
    recs = rec.recommend(history=history, k=5)
    assert len(recs) == 5
    explained = rec.explain(history=history, k=2, method="occlusion")
    assert len(explained) == 2 and all(e.contributions for e in explained)  # occlusion of the history items

    with TestClient(create_app(rec)) as client:
        r = client.post("/v1/recommend", json={"history": history, "k": 4})
        assert r.status_code == 200, r.text
        assert [x["item_id"] for x in r.json()["items"]] == [x.item_id for x in rec.recommend(history=history, k=4)]


def _numbers(tree: object) -> list[float]:
    if isinstance(tree, dict):
        return [v for x in tree.values() for v in _numbers(x)]
    if isinstance(tree, list):
        return [v for x in tree for v in _numbers(x)]
    return [float(tree)] if isinstance(tree, int | float) and not isinstance(tree, bool) else []
