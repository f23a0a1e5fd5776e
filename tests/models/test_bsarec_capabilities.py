"""BSARec works wherever its capabilities allow (issue 20): the doors ask `llmrec.models.base` protocols, never a
class or a model_type. Cold-item mapping and collaborative semantic ids on a tiny BSARec artifact; a model
without item embeddings (most-popular) is refused by what it cannot do. Meta-training: tests/meta/test_training.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from llmrec.data import PreparedDataset
from llmrec.models.bsarec import BSARec, BSARecConfig

TINY: dict[str, Any] = dict(max_seq_len=8, d_model=16, n_layers=1, n_heads=2, d_ff=32, dropout=0.0, emb_dropout=0.0)


def _bsarec(ds: PreparedDataset, out: Path) -> tuple[BSARec, Path]:
    from llmrec.artifact import save_artifact

    torch.manual_seed(0)
    model = BSARec(BSARecConfig(n_items=ds.n_items, **TINY)).eval()
    return model, save_artifact(model, ds, out)


def _popular(ds: PreparedDataset, out: Path) -> Path:
    from llmrec.artifact import save_artifact
    from llmrec.models.baselines import MostPopular

    return save_artifact(MostPopular(torch.arange(ds.n_items + 1, dtype=torch.float32)), ds, out)


class _HashEncoder:
    """Deterministic text vectors (no model to load)."""

    name = "hash-12"
    dim = 12

    def __init__(self, *_: object) -> None:
        pass

    def encode(self, texts: list[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        rng = [np.random.default_rng(abs(hash(t)) % 2**32) for t in texts]
        return np.stack([r.standard_normal(self.dim) for r in rng]).astype(np.float32)


def test_bsarec_has_every_capability_and_the_baseline_none() -> None:
    from llmrec.models.base import (
        Adaptable,
        ColdItemMappable,
        GradientAttributable,
        ItemEmbeddingModel,
        OnnxExportable,
        RecModel,
        Trainable,
    )
    from llmrec.models.baselines import MostPopular

    model = BSARec(BSARecConfig(n_items=10, **TINY))
    capabilities = (RecModel, Trainable, ItemEmbeddingModel, Adaptable, ColdItemMappable, GradientAttributable, OnnxExportable)
    assert all(isinstance(model, p) for p in capabilities)
    pop = MostPopular(torch.ones(11))
    assert isinstance(pop, RecModel) and not isinstance(pop, ItemEmbeddingModel | ColdItemMappable | OnnxExportable)


def test_map_cold_items_maps_a_bsarec_artifact(
    tiny_prepared: PreparedDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmrec.index
    from llmrec.models import load_model
    from llmrec.models.cold_items import map_cold_items_artifact, untrained_items

    monkeypatch.setattr(llmrec.index, "SentenceTransformerEncoder", _HashEncoder)
    base, path = _bsarec(tiny_prepared, tmp_path / "bsarec")
    summary = map_cold_items_artifact(path, tiny_prepared, tmp_path / "mapped", text_cache_dir=tmp_path / "cache")
    cold = untrained_items(tiny_prepared, refit=False)
    assert len(cold) > 0 and summary["cold_items"] == len(cold)
    mapped = load_model(tmp_path / "mapped").eval()
    assert isinstance(mapped, BSARec)
    with torch.no_grad():
        before, after = base.item_table(), mapped.item_table()
    warm = np.setdiff1d(np.arange(1, tiny_prepared.n_items + 1), cold)
    assert torch.equal(before[warm], after[warm]) and not torch.allclose(before[cold], after[cold])

    with pytest.raises(ValueError, match="has no item rows to map"):
        map_cold_items_artifact(_popular(tiny_prepared, tmp_path / "pop"), tiny_prepared, tmp_path / "x")


def test_collaborative_item_embeddings_read_a_bsarec_artifact(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.training.semantic import collaborative_item_embeddings

    model, path = _bsarec(tiny_prepared, tmp_path / "bsarec")
    table = collaborative_item_embeddings(path, tiny_prepared.n_items)
    with torch.no_grad():
        np.testing.assert_array_equal(table, model.item_table().numpy())
    with pytest.raises(ValueError, match="not the same catalogue"):
        collaborative_item_embeddings(path, tiny_prepared.n_items + 1)
    with pytest.raises(ValueError, match="has no item embeddings"):
        collaborative_item_embeddings(_popular(tiny_prepared, tmp_path / "pop"), tiny_prepared.n_items)


def test_export_onnx_of_a_bsarec_artifact_matches_pytorch(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    """`llmrec export --onnx` asks OnnxExportable, so BSARec (Fourier filter and attention) exports and checks."""
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from typer.testing import CliRunner

    from llmrec.cli import app

    model, art = _bsarec(tiny_prepared, tmp_path / "bsa")
    out = tmp_path / "deploy"
    result = CliRunner().invoke(app, ["export", "--model", str(art), "--out", str(out), "--onnx"])
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(out / "scorer.onnx"), providers=["CPUExecutionProvider"])
    ids = np.zeros((2, TINY["max_seq_len"]), dtype=np.int64)
    ids[0, -3:] = [1, 2, 3]
    ids[1, -1] = 4
    got = session.run(None, {"item_ids": ids})[0]
    want = model.score(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], atol=1e-4)


def test_gradient_attribution_explains_a_bsarec_model() -> None:
    """gradient × input asks GradientAttributable: BSARec's token inputs enter its first block; a model without
    them is refused with a pointer to occlusion."""
    from llmrec.explain.attribution import attribute
    from llmrec.models.baselines import MostPopular

    torch.manual_seed(0)
    model = BSARec(BSARecConfig(n_items=10, **TINY)).eval()
    a = attribute(model, np.array([3, 4, 5]), [7, 8], TINY["max_seq_len"], method="gradient")
    assert a.shape == (2, 3) and np.isfinite(a).all() and np.abs(a).sum() > 0
    with pytest.raises(TypeError, match="use occlusion"):
        attribute(MostPopular(torch.ones(11)), np.array([3, 4]), [7], 8, method="gradient")
