"""`llmrec.meta.training`: the meta-trained artifact, the fine-tune grid and the cold-start table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.artifact import write_manifest
from llmrec.data import PreparedDataset

FAST_META = {"meta_steps": 4, "eval_every": 2, "meta_batch_size": 8, "support_sizes": [1, 2]}
BSAREC = {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "dropout": 0.0, "emb_dropout": 0.0}


def test_finetune_picks_the_best_grid_point_on_validation_users(tiny_cold: PreparedDataset, tiny_lm) -> None:  # type: ignore[no-untyped-def]
    from llmrec.meta.maml import AdapterConfig
    from llmrec.meta.training import FINETUNE_GRID, tune_finetune

    valid = tiny_cold.cold_users("cold_valid")[1]
    adapter, history = tune_finetune(tiny_lm, AdapterConfig(d_model=16), valid, support_sizes=(1, 2))
    assert [(h["inner_lr"], int(h["inner_steps"])) for h in history] == list(FINETUNE_GRID)
    best = max(history, key=lambda h: h["valid"])  # first of equals wins, as in the search
    assert (adapter.config.inner_lr, adapter.config.inner_steps) == (best["inner_lr"], int(best["inner_steps"]))


def test_meta_trained_artifact_is_the_base_with_new_weights_and_an_adapter(
    tiny_base: Path, tiny_cold: PreparedDataset, tmp_path: Path
) -> None:
    from llmrec.meta.training import meta_train_model
    from llmrec.recommend import Recommender

    (tiny_base / "adapter.json").write_text("{}")  # a base's own adapter is never carried over
    out = tmp_path / "maml"
    summary = meta_train_model(tiny_cold, tiny_base, out, "maml", {"meta": FAST_META})
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        ".llmrec.json",
        "adapter.json",
        "adapter.safetensors",
        "config.json",
        "dataset.json",
        "histories.parquet",
        "items.parquet",
        "manifest.json",
        "meta.json",
        "model.safetensors",
    ]
    assert json.loads((out / "adapter.json").read_text())["d_model"] == 16
    meta = json.loads((out / "meta.json").read_text())
    assert meta["method"] == "maml" and meta["valid"] == pytest.approx(summary["valid"])
    assert 0.0 <= summary["valid"] <= 1.0 and summary["warm_valid"] == pytest.approx(
        summary["warm_valid_base"]
    )  # the LM is frozen
    rec = Recommender.load(out)
    assert rec.adapter is not None and len(rec.recommend(history=rec.raw_ids[:2], k=3, adapt=True)) == 3


def test_meta_train_refuses_bad_methods_sections_and_outputs(tiny_base: Path, tiny_cold: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.meta.training import meta_train_model

    with pytest.raises(ValueError, match="unknown method 'reptile'"):
        meta_train_model(tiny_cold, tiny_base, tmp_path / "x", "reptile", {})
    with pytest.raises(ValueError, match="unknown config section"):
        meta_train_model(tiny_cold, tiny_base, tmp_path / "x", "maml", {"inner": {}})
    with pytest.raises(ValueError, match="--out must differ from --base"):
        meta_train_model(tiny_cold, tiny_base, tiny_base, "maml", {"meta": FAST_META})
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("not llmrec's")  # an empty folder is written into; this one is not
    with pytest.raises(FileExistsError, match="refusing to replace"):
        meta_train_model(tiny_cold, tiny_base, tmp_path / "notes", "maml", {"meta": FAST_META})


def test_cold_start_table_is_one_row_per_method() -> None:
    from llmrec.eval.cold_start import ColdStartResult
    from llmrec.meta.training import cold_start_table, cold_valid_score

    r = ColdStartResult(support_sizes=(1, 2), n_users=3, exclude_seen=True)
    r.metrics = {1: {"ndcg@10": 0.1, "recall@10": 0.2}, 2: {"ndcg@10": 0.3, "recall@10": 0.4}}
    r.ci = {1: {"ndcg@10": (0.0, 0.2), "recall@10": (0.1, 0.3)}, 2: {"ndcg@10": (0.2, 0.4), "recall@10": (0.3, 0.5)}}
    assert cold_valid_score(r) == pytest.approx(0.2)
    assert cold_start_table({"maml": r}).splitlines() == [
        "| method | ndcg@10 n=1 | ndcg@10 n=2 | recall@10 n=1 | recall@10 n=2 |",
        "|---|---|---|---|---|",
        "| maml | 0.1000 [0.0000, 0.2000] | 0.3000 [0.2000, 0.4000] | 0.2000 [0.1000, 0.3000] | 0.4000 [0.3000, 0.5000] |",
    ]


@pytest.fixture
def bsarec_base(tiny_cold: PreparedDataset, tmp_path: Path) -> Path:
    """A tiny untrained BSARec saved as a model artifact that records its saved dataset (as tiny_base)."""
    import torch

    from llmrec.models.bsarec import BSARec, BSARecConfig
    from llmrec.training import save_artifact

    torch.manual_seed(0)
    model = BSARec(BSARecConfig(n_items=tiny_cold.n_items, **BSAREC)).eval()
    data = tiny_cold.save(tmp_path / "data")
    out = save_artifact(model, tiny_cold, tmp_path / "bsarec")
    meta = json.loads((out / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps({**meta, "prepared_path": str(data)}))
    write_manifest(out)  # the artifact lists dataset.json as it is now
    return out


@pytest.mark.parametrize("method", ["maml", "in-context"])
def test_a_bsarec_base_meta_trains_through_its_capabilities(
    bsarec_base: Path, tiny_cold: PreparedDataset, tmp_path: Path, method: str
) -> None:
    """BSARec is an ItemEmbeddingModel and Trainable: meta-training asks those, not the class (issue 20)."""
    from llmrec.meta.training import meta_train_model
    from llmrec.models import load_model
    from llmrec.models.bsarec import BSARec
    from llmrec.recommend import Recommender

    sections = {"meta": FAST_META} if method == "maml" else {"train": {"epochs": 1, "progress": False}}
    summary = meta_train_model(tiny_cold, bsarec_base, tmp_path / method, method, sections)
    assert summary["method"] == method and 0.0 <= summary["valid"] <= 1.0
    assert isinstance(load_model(tmp_path / method), BSARec)
    rec = Recommender.load(tmp_path / method)
    assert (rec.adapter is not None) == (method == "maml")
    assert len(rec.recommend(history=rec.raw_ids[:2], k=3, adapt=method == "maml")) == 3


def test_meta_train_refuses_a_base_without_item_embeddings(tiny_cold: PreparedDataset, tmp_path: Path) -> None:
    import torch

    from llmrec.meta.training import meta_train_model
    from llmrec.models.baselines import MostPopular
    from llmrec.training import save_artifact

    pop = save_artifact(MostPopular(torch.ones(tiny_cold.n_items + 1)), tiny_cold, tmp_path / "pop")
    with pytest.raises(ValueError, match="--base must be a model with item embeddings"):
        meta_train_model(tiny_cold, pop, tmp_path / "x", "maml", {"meta": FAST_META})
