"""`model.item_text = true` from Python, the CLI (--set) and TOML; derived sizes cannot be set."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data import PreparedDataset
from llmrec.experiment import check_settings, train_model
from llmrec.index.text_encoder import encode_items
from llmrec.training.fit import build_model

fit_module = sys.modules["llmrec.training.fit"]  # the module, not the `fit` function llmrec.train exports

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "max_seq_len": 8}
TINY_SET = [f"--set=model.{k}={v}" for k, v in TINY.items()]


class FakeEncoder:
    """Deterministic 8-d unit vectors from a hash of each text (stands in for MiniLM)."""

    name = "fake-hash-8"
    dim = 8

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], dtype=np.uint8) for t in texts])
        out = out.astype(np.float32) + 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def fake_minilm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The packaged encoder replaced by FakeEncoder; the embedding cache in a temporary folder."""
    monkeypatch.setattr(fit_module, "SentenceTransformerEncoder", FakeEncoder)
    monkeypatch.setenv("LLMREC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_item_text_param_adds_the_catalogue_embeddings(tiny_prepared: PreparedDataset, fake_minilm: Path) -> None:
    model, _ = build_model(tiny_prepared, {**TINY, "item_text": True})
    assert model.config.text_dim == FakeEncoder.dim
    want = encode_items(tiny_prepared.items, tiny_prepared.domain, FakeEncoder(), progress=False)
    torch.testing.assert_close(model.item_text, torch.from_numpy(want))
    assert any((fake_minilm).rglob("index.json"))  # encoded once into the cache
    plain, _ = build_model(tiny_prepared, {**TINY, "item_text": False})
    assert plain.config.text_dim == 0


def test_item_text_without_catalogue_text_is_refused(tiny_prepared: PreparedDataset, fake_minilm: Path) -> None:
    items = tiny_prepared.items.with_columns(pl.lit(None, pl.String).alias("title"), pl.lit(None, pl.String).alias("text"))
    no_text = PreparedDataset(
        sequences=tiny_prepared.sequences, times=tiny_prepared.times, users=tiny_prepared.users, items=items,
        manifest=tiny_prepared.manifest,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"model\.item_text = true needs item text.*--items"):
        build_model(no_text, {**TINY, "item_text": True})


@pytest.mark.parametrize("key", ["n_items", "text_dim", "n_attributes", "max_item_attributes"])
def test_derived_sizes_cannot_be_set(key: str, tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=rf"model\.{key}\b.*derived from the data"):
        train_model(tiny_prepared, tmp_path / "d", check_settings("next-item-lm", {"model": {key: 3}}), tmp_path / "m")
    with pytest.raises(ValueError, match=rf"model\.{key}\b.*derived from the data"):
        build_model(tiny_prepared, {key: 3})
    assert not (tmp_path / "m").exists()


def test_unknown_key_error_lists_item_text_but_not_derived_sizes(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model.use_txt") as info:
        check_settings("next-item-lm", {"model": {"use_txt": True}})
    known = str(info.value).split("known: ")[1].split(", ")
    assert "item_text" in known and "use_attributes" in known
    assert not {"n_items", "text_dim", "n_attributes", "max_item_attributes"} & set(known)


def test_item_text_must_be_a_boolean(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='model.item_text: expected true/false, "auto", "minilm", "llm" or the path'):
        check_settings("next-item-lm", {"model": {"item_text": "no-such-encoder"}})


@pytest.mark.parametrize("how", ["set", "toml"])
def test_cli_trains_with_item_text(how: str, tiny_prepared: PreparedDataset, tmp_path: Path, fake_minilm: Path) -> None:
    data = tiny_prepared.save(tmp_path / "data")
    args = ["train", "--dataset", str(data), "--out", str(tmp_path / "lm"), "--set", "train.epochs=1", *TINY_SET]
    if how == "set":
        args += ["--set", "model.item_text=true"]
    else:
        (tmp_path / "c.toml").write_text("[model]\nitem_text = true\n")
        args += ["--config", str(tmp_path / "c.toml")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert config["text_dim"] == FakeEncoder.dim


def test_cli_refuses_a_derived_size(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    data = tiny_prepared.save(tmp_path / "data")
    args = ["train", "--dataset", str(data), "--out", str(tmp_path / "lm"), "--set", "model.text_dim=384"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: model.text_dim is derived from the data"), result.stderr
    assert "model.item_text = true" in result.stderr
    assert not (tmp_path / "lm").exists()


def test_python_train_takes_item_text(tiny_prepared: PreparedDataset, tmp_path: Path, fake_minilm: Path) -> None:
    import llmrec

    data = tiny_prepared.save(tmp_path / "data")
    rec = llmrec.train(data, out=tmp_path / "lm", epochs=1, item_text=True, progress=False, **TINY)
    assert rec.model.config.text_dim == FakeEncoder.dim
    assert json.loads((tmp_path / "lm" / "training.json").read_text())["params"]["item_text"] is True


def test_item_text_names_its_encoder(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    """`item_text` is true/false, "minilm", "llm" or an encoder path: the LLM and local models are item encoders."""
    from llmrec.index.llm import LLMEncoder
    from llmrec.index.text_encoder import SentenceTransformerEncoder
    from llmrec.training.fit import text_encoder_for

    assert text_encoder_for(False) is None
    assert isinstance(text_encoder_for(True), SentenceTransformerEncoder)
    assert isinstance(text_encoder_for("minilm"), SentenceTransformerEncoder)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    encoder = text_encoder_for(str(gguf))
    assert isinstance(encoder, LLMEncoder) and encoder.path == gguf  # nothing is loaded yet
    check_settings("tvrec", {"model": {"item_text": str(gguf)}})
    check_settings("tvrec", {"model": {"item_text": "llm"}})


def test_cli_trains_with_an_llm_folder_as_item_encoder(
    tiny_prepared: PreparedDataset, tiny_llm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A causal-LM folder as `item_text`: its hidden states become the item text, stored with the artifact under
    the encoder's name (a tiny random Llama stands in for SmolLM2)."""
    monkeypatch.setenv("LLMREC_CACHE_DIR", str(tmp_path / "cache"))
    llm = tiny_llm
    data = tiny_prepared.save(tmp_path / "data")
    args = ["train", "--dataset", str(data), "--out", str(tmp_path / "m"), "--model", "tvrec", "--set", "train.epochs=1"]
    args += ["--set", "model.d_model=16", "--set", "model.max_seq_len=8", "--set", f"model.item_text={llm}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["text_dim"] == 16  # the tiny LLM's hidden size
    stored = json.loads((tmp_path / "m" / "item_text.json").read_text())
    assert stored["encoder"].startswith("tiny-llm@") and "layer" in stored["encoder"]


def _titled(dataset: PreparedDataset, share: float) -> PreparedDataset:
    """`dataset` with a title on the first `share` of its items only (no text column values)."""
    n = dataset.items.height
    keep = int(round(share * n))
    titles = [f"Product {i}" if i < keep else None for i in range(n)]
    items = dataset.items.with_columns(pl.Series("title", titles, pl.String), pl.lit(None, pl.String).alias("text"))
    return PreparedDataset(
        sequences=dataset.sequences, times=dataset.times, users=dataset.users, items=items, manifest=dataset.manifest
    )


@pytest.mark.parametrize(("share", "expected"), [(1.0, "minilm"), (0.6, "minilm"), (0.4, False), (0.0, False)])
def test_auto_reads_text_when_most_of_the_catalogue_has_some(
    share: float, expected: bool | str, tiny_prepared: PreparedDataset
) -> None:
    from llmrec.training.fit import resolve_item_text, titled_share

    data = _titled(tiny_prepared, share)
    assert titled_share(data.items) == pytest.approx(round(share * data.items.height) / data.items.height)
    assert resolve_item_text("auto", data) == expected
    for kept in (True, False, "llm"):  # anything but "auto" is the user's choice, kept as given
        assert resolve_item_text(kept, data) == kept


def test_blank_titles_do_not_count_as_text(tiny_prepared: PreparedDataset) -> None:
    from llmrec.training.fit import titled_share

    items = tiny_prepared.items.with_columns(pl.lit("  ", pl.String).alias("title"), pl.lit(None, pl.String).alias("text"))
    assert titled_share(items) == 0.0


@pytest.mark.parametrize(("share", "text_dim", "shown"), [(1.0, FakeEncoder.dim, "item titles / text through"), (0.0, 0, "none")])
def test_cli_auto_builds_the_text_model_only_on_a_titled_catalogue(
    share: float, text_dim: int, shown: str, tiny_prepared: PreparedDataset, tmp_path: Path, fake_minilm: Path
) -> None:
    data = _titled(tiny_prepared, share).save(tmp_path / "data")
    tv = ["--model", "tvrec", "--set=model.d_model=16", "--set=model.n_layers=1", "--set=model.max_seq_len=8"]
    args = ["train", "--dataset", str(data), "--out", str(tmp_path / "tv"), "--set", "train.epochs=1", *tv]
    result = CliRunner().invoke(app, [*args, "--set", "model.item_text=auto"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "tv" / "config.json").read_text())["text_dim"] == text_dim
    row = next(line for line in result.output.splitlines() if line.startswith("│ text "))
    assert shown in row
