"""T5 over semantic ids: inputs, shapes, overfitting, trie-constrained beam search, scores, save/load, pretrained T5."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec.eval.evaluate import compute_ranks
from llmrec.index.semantic_ids import SemanticIds, build_semantic_ids
from llmrec.models.seq2seq import (
    BOS_TOKEN,
    EOS_TOKEN,
    N_SPECIAL,
    PAD_TOKEN,
    T5SemanticConfig,
    T5SemanticRecommender,
    prefix_windows,
)
from llmrec.types import SeqBatch

N_ITEMS = 50
TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "max_seq_len": 5, "num_beams": 8, "dropout": 0.0}


@functools.cache
def _ids() -> SemanticIds:
    """50 items, 2 levels x 4 codes + a disambiguation code (4, 4, D): a dense-enough trie with real collisions."""
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(N_ITEMS + 1, 8, generator=g)
    return build_semantic_ids(emb, n_levels=2, codebook_size=4, seed=0)


def _model(seed: int = 0, **overrides: Any) -> T5SemanticRecommender:
    torch.manual_seed(seed)
    ids = _ids()
    cfg = T5SemanticConfig(n_items=N_ITEMS, codebook_sizes=ids.codebook_sizes, **{**TINY, **overrides})
    return T5SemanticRecommender(cfg, ids).eval()


@functools.cache
def _shared_model() -> T5SemanticRecommender:
    return _model()


def _tokens(model: T5SemanticRecommender, item: int) -> list[int]:
    return model.item_tokens[item].tolist()  # type: ignore[no-any-return]


@torch.no_grad()
def _exact_log_probs(model: T5SemanticRecommender, item_ids: torch.Tensor) -> torch.Tensor:
    """[B, V+1] teacher-forced log P(codes of item | history) of every item; the reference beam search must match."""
    input_ids, mask = model.encoder_inputs(item_ids)
    B, V = item_ids.shape[0], N_ITEMS
    labels = model.item_tokens[1:].repeat(B, 1)  # [B * V, T]
    out = model.t5(input_ids=input_ids.repeat_interleave(V, 0), attention_mask=mask.repeat_interleave(V, 0), labels=labels)
    logp = out.logits.log_softmax(-1).gather(2, labels[:, :, None])[:, :, 0].sum(1)  # [B * V]
    return torch.cat([torch.full((B, 1), float("-inf")), logp.view(B, V)], 1)


# ---- inputs and training ---------------------------------------------------------------------------------------
def test_prefix_windows_make_one_example_per_event_after_the_first() -> None:
    seqs = [np.array([1, 2, 3, 4]), np.array([7]), np.array([5, 6])]
    got = [w.tolist() for w in prefix_windows(seqs, 2)]
    assert got == [[1, 2], [1, 2, 3], [2, 3, 4], [5, 6]]


def test_encoder_inputs_are_item_codes_then_eos_left_padded_and_truncated() -> None:
    m = _shared_model()
    a, b = _tokens(m, 3), _tokens(m, 4)
    T = len(a)
    ids, mask = m.encoder_inputs(torch.tensor([[0, 0, 0, 3, 4], [0, 0, 0, 0, 0]]))
    assert ids.shape == (2, 2 * T + 1)
    assert ids[0].tolist() == a + b + [EOS_TOKEN]
    assert ids[1].tolist() == [PAD_TOKEN] * 2 * T + [EOS_TOKEN]  # an empty history is still a valid input
    assert mask.tolist() == [[1] * (2 * T + 1), [0] * 2 * T + [1]]
    long, _ = m.encoder_inputs(torch.tensor([[9, 8, 1, 2, 3, 4, 5]]))  # max_seq_len = 5: items 1..5 kept
    assert long[0].tolist() == sum((_tokens(m, i) for i in (1, 2, 3, 4, 5)), []) + [EOS_TOKEN]
    assert all(t >= N_SPECIAL for t in a) and BOS_TOKEN == m.t5.config.decoder_start_token_id


def test_forward_shapes_and_a_finite_loss() -> None:
    m = _shared_model()
    batch = SeqBatch(item_ids=torch.tensor([[0, 1, 2], [3, 4, 5]]), targets=torch.tensor([[0, 2, 7], [4, 5, 9]]))
    out = m(batch)
    assert out.logits.shape == (2, len(m.config.codebook_sizes), m.t5.config.vocab_size)
    assert out.loss is not None and torch.isfinite(out.loss)


def test_loss_falls_when_overfitting_one_batch() -> None:
    m = _model(seed=1).train()
    g = torch.Generator().manual_seed(1)
    batch = SeqBatch(
        item_ids=torch.randint(1, N_ITEMS + 1, (8, 4), generator=g), targets=torch.randint(1, N_ITEMS + 1, (8, 4), generator=g)
    )
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = last = 0.0
    for step in range(40):
        loss = m(batch).loss
        assert loss is not None
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if step == 0 else first
        last = loss.item()
    assert last < 0.3 * first


# ---- constrained beam search -------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    histories=st.lists(st.lists(st.integers(0, N_ITEMS), min_size=0, max_size=7), min_size=1, max_size=4),
    k=st.integers(1, 12),
    beams=st.integers(1, 12),
)
def test_every_generated_item_is_a_real_item(histories: list[list[int]], k: int, beams: int) -> None:
    m = _shared_model()
    width = max(1, max(len(h) for h in histories))
    item_ids = torch.tensor([[0] * (width - len(h)) + h for h in histories])
    items, scores = m.generate(item_ids, k=k, num_beams=beams)
    assert items.shape == scores.shape == (len(histories), min(k, beams))
    assert ((items >= 1) & (items <= N_ITEMS)).all()  # 100%: never padding, never outside the catalogue
    assert torch.isfinite(scores).all()
    codes = m.semantic_ids.codes[items.flatten()]
    assert torch.equal(m.trie.items_of(codes), items.flatten())  # the codes really spell these items
    for row in items.tolist():
        assert len(set(row)) == len(row)


def test_beam_order_is_score_order_and_beams_find_the_exact_top_k() -> None:
    # With at least as many beams as prefixes at every depth, beam search is exhaustive: its top-k must be the
    # top-k of the teacher-forced log-probabilities of all items, with the same scores.
    m = _shared_model()
    item_ids = torch.tensor([[0, 0, 1, 2, 3], [5, 6, 7, 8, 9]])
    items, scores = m.generate(item_ids, k=10, num_beams=N_ITEMS)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    exact = _exact_log_probs(m, item_ids)  # [B, V+1]
    top = exact.topk(10, dim=1)
    assert torch.equal(items, top.indices)
    torch.testing.assert_close(scores, top.values, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(scores, exact.gather(1, items), atol=1e-4, rtol=1e-4)


def test_tensor_mask_matches_the_plain_prefix_allowed_tokens_fn_reference() -> None:
    # The reference is the recipe: `prefix_allowed_tokens_fn` returning the trie's allowed tokens as a list.
    from transformers import GenerationConfig

    m = _shared_model()
    item_ids = torch.tensor([[0, 0, 1, 2, 3], [5, 6, 7, 8, 9], [0, 0, 0, 0, 0]])
    T = m.config.depth

    def allowed(batch_id: int, prefix: torch.Tensor) -> list[int]:
        codes = m.token_code[prefix[1:]].tolist()
        return [int(m.code_tokens[len(codes)][c]) for c in m.trie.allowed(codes)] if len(codes) < T else [PAD_TOKEN]

    input_ids, mask = m.encoder_inputs(item_ids)
    gen = GenerationConfig(
        num_beams=8,
        num_return_sequences=8,
        max_new_tokens=T,
        length_penalty=0.0,
        early_stopping=True,
        decoder_start_token_id=BOS_TOKEN,
        pad_token_id=PAD_TOKEN,
        eos_token_id=EOS_TOKEN,
        return_dict_in_generate=True,
        output_scores=True,
    )
    ref = m.t5.generate(input_ids=input_ids, attention_mask=mask, generation_config=gen, prefix_allowed_tokens_fn=allowed)
    ref_items = m.trie.items_of(m.token_code[ref.sequences[:, 1:]]).view(3, 8)
    items, scores = m.generate(item_ids, k=8, num_beams=8)
    assert torch.equal(items, ref_items)
    torch.testing.assert_close(scores, ref.sequences_scores.view(3, 8))


def test_fewer_items_than_beams_pads_with_item_zero() -> None:
    m = _shared_model()
    items, scores = m.generate(torch.tensor([[1, 2]]), k=N_ITEMS + 5, num_beams=N_ITEMS + 5)
    real = items[0][items[0] > 0]
    assert sorted(real.tolist()) == list(range(1, N_ITEMS + 1))
    assert torch.isinf(scores[0][items[0] == 0]).all()


def test_score_puts_the_beams_in_a_full_row_and_the_rest_at_minus_inf() -> None:
    m = _shared_model()
    item_ids = torch.tensor([[0, 1, 2], [3, 4, 5]])
    s = m.score(item_ids)
    items, scores = m.generate(item_ids, k=m.config.num_beams)
    assert s.shape == (2, N_ITEMS + 1)
    assert torch.isneginf(s[:, 0]).all()
    assert (torch.isfinite(s).sum(1) == m.config.num_beams).all()
    torch.testing.assert_close(s.gather(1, items), scores)
    # The evaluator ranks an item outside the beams last (pessimistic ties among the -inf items).
    outside = next(i for i in range(1, N_ITEMS + 1) if i not in items[0].tolist())
    first = int(items[0, 0])
    ranks = compute_ranks(
        lambda hs: m.score(item_ids[:1].expand(len(hs), -1)), [np.array([1, 2])] * 2, np.array([first, outside])
    )
    assert ranks.tolist() == [1, N_ITEMS]


def test_score_candidates_is_the_exact_log_probability_and_matches_the_beams() -> None:
    m = _shared_model()
    item_ids = torch.tensor([[0, 0, 1, 2, 3], [5, 6, 7, 8, 9]])
    exact = _exact_log_probs(m, item_ids)  # [B, V+1]
    candidates = torch.tensor([7, 1, 50, 23])
    torch.testing.assert_close(m.score_candidates(item_ids, candidates, max_rows=3), exact[:, candidates])
    items, scores = m.generate(item_ids, k=5)
    torch.testing.assert_close(scores, torch.stack([m.score_candidates(item_ids[b : b + 1], items[b])[0] for b in range(2)]))


def test_cold_items_join_the_beams_with_their_exact_score_plus_the_offset() -> None:
    m = _model(cold_weight=0.5)
    seen = torch.ones(N_ITEMS + 1, dtype=torch.bool)
    cold = [4, 9, 17, 33]
    seen[cold] = False
    m.set_seen_items(seen)
    item_ids = torch.tensor([[0, 1, 2]])
    items, scores = m.generate(item_ids, k=N_ITEMS)
    beams, beam_scores = _model().generate(item_ids, k=N_ITEMS)  # the same weights without cold items
    beam = {i: v for i, v in zip(beams[0].tolist(), beam_scores[0].tolist(), strict=True) if i > 0}
    got = {i: v for i, v in zip(items[0].tolist(), scores[0].tolist(), strict=True) if i > 0}
    exact = _exact_log_probs(m, item_ids)[0]
    assert set(got) == set(beam) | set(cold)  # every cold item is ranked, the beams are kept
    for c in cold:  # a cold item that the beams found keeps its (higher) beam score
        assert got[c] == pytest.approx(max(float(exact[c]) + np.log(0.5), beam.get(c, -np.inf)), abs=1e-4)
    for i in set(beam) - set(cold):
        assert got[i] == pytest.approx(beam[i], abs=1e-6)
    assert (items <= N_ITEMS).all() and torch.equal(items == 0, torch.isinf(scores))  # item 0 only as filler
    assert (scores[:, :-1] >= scores[:, 1:]).all()


# ---- persistence -------------------------------------------------------------------------------------------------
def test_save_pretrained_from_pretrained_gives_identical_generations(tmp_path: Path) -> None:
    m = _model(seed=3, cold_weight=0.1)
    seen = torch.ones(N_ITEMS + 1, dtype=torch.bool)
    seen[[5, 6]] = False
    m.set_seen_items(seen)
    m.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {
        "config.json",
        "model.safetensors",
        "semantic_ids.json",
        "semantic_ids.safetensors",
    }
    loaded = T5SemanticRecommender.from_pretrained(tmp_path / "m")
    item_ids = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    for a, b in zip(m.generate(item_ids, k=10), loaded.generate(item_ids, k=10), strict=True):
        assert torch.equal(a, b)
    assert loaded.config == m.config
    assert torch.equal(loaded.is_seen, seen)


def test_config_validation_and_round_trip() -> None:
    with pytest.raises(ValueError, match="divisible"):
        T5SemanticConfig(n_items=3, codebook_sizes=(2, 2), d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="cold_weight"):
        T5SemanticConfig(n_items=3, codebook_sizes=(2, 2), cold_weight=-1.0)
    with pytest.raises(ValueError, match="unknown T5SemanticConfig keys: typo"):
        T5SemanticConfig.from_dict({"n_items": 3, "codebook_sizes": [2, 2], "typo": 1})
    cfg = T5SemanticConfig(n_items=3, codebook_sizes=(2, 2))
    assert T5SemanticConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="do not match"):
        T5SemanticRecommender(T5SemanticConfig(n_items=49, codebook_sizes=_ids().codebook_sizes), _ids())


# ---- the pretrained variant: a local T5 checkpoint + tokenizer ----------------------------------------------------
def _tiny_t5_checkpoint(path: Path) -> Path:
    """A tiny T5 and a word-level tokenizer built from configs and saved locally (no downloads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    words = ["<pad>", "</s>", "<unk>", "User", "history", ":", ",", ".", "Next", "item", "movie", "the"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(path))
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=16,
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )  # vocab padded past the tokenizer, as T5's
    T5ForConditionalGeneration(cfg).save_pretrained(str(path))
    return path


def test_pretrained_variant_adds_code_tokens_and_writes_the_prompt(tmp_path: Path) -> None:
    ckpt = _tiny_t5_checkpoint(tmp_path / "t5")
    m, tokenizer = T5SemanticRecommender.from_t5_checkpoint(ckpt, _ids(), max_seq_len=5, num_beams=8)
    sizes = _ids().codebook_sizes
    # New tokens follow the tokenizer's 12 words (as T5's follow its 32,100): they first fill the checkpoint's unused
    # padding rows 12..15, then the embeddings grow.
    assert m.config.code_token_start == 12
    assert m.t5.config.vocab_size == 12 + sum(sizes) == len(tokenizer)
    assert tokenizer.convert_tokens_to_ids("<c1_3>") == 12 + sizes[0] + 3
    ids, mask = m.encoder_inputs(torch.tensor([[0, 3, 4], [0, 0, 0]]))
    c3 = "".join(f"<c{t}_{c}>" for t, c in enumerate(_ids().codes[3].tolist()))
    c4 = "".join(f"<c{t}_{c}>" for t, c in enumerate(_ids().codes[4].tolist()))
    text = tokenizer.decode(ids[0][mask[0].bool()]).replace(" ", "")
    assert text == f"Userhistory:{c3},{c4}.Nextitem:</s>"
    assert tokenizer.decode(ids[1][mask[1].bool()]).replace(" ", "") == "Userhistory:.Nextitem:</s>"
    out = m.train()(SeqBatch(item_ids=torch.tensor([[0, 3, 4]]), targets=torch.tensor([[0, 4, 7]])))
    assert out.loss is not None and torch.isfinite(out.loss)
    m.eval()
    items, scores = m.generate(torch.tensor([[0, 3, 4], [1, 2, 3]]), k=5)
    assert ((items >= 1) & (items <= N_ITEMS)).all() and (scores[:, :-1] >= scores[:, 1:]).all()
    # The artifact is self-contained: it loads and decodes the same with the checkpoint directory gone.
    m.save_pretrained(tmp_path / "artifact")
    for f in ckpt.iterdir():
        f.unlink()
    loaded = T5SemanticRecommender.from_pretrained(tmp_path / "artifact")
    for a, b in zip(m.generate(torch.tensor([[0, 3, 4]]), k=5), loaded.generate(torch.tensor([[0, 3, 4]]), k=5), strict=True):
        assert torch.equal(a, b)


def test_pretrained_variant_keeps_the_checkpoint_weights(tmp_path: Path) -> None:
    from transformers import T5ForConditionalGeneration

    ckpt = _tiny_t5_checkpoint(tmp_path / "t5")
    original = T5ForConditionalGeneration.from_pretrained(str(ckpt))
    m, _ = T5SemanticRecommender.from_t5_checkpoint(ckpt, _ids())
    torch.testing.assert_close(m.t5.shared.weight[:16], original.shared.weight)
    name = "encoder.block.0.layer.0.SelfAttention.q.weight"
    torch.testing.assert_close(m.t5.state_dict()[name], original.state_dict()[name])


# ---- wiring: training helper, artifact, Recommender ---------------------------------------------------------------
class _HashEncoder:
    """Deterministic unit vectors from a hash of each text (no model to load)."""

    name = "hash-8"
    dim = 8

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], dtype=np.uint8) for t in texts])
        out = out.astype(np.float32) + 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)  # type: ignore[no-any-return]


def test_fit_t5_semantic_trains_saves_and_recommends(tiny_prepared: Any, tmp_path: Path) -> None:
    from llmrec.experiment import check_settings, fit_t5_semantic
    from llmrec.recommend import Recommender, load_model
    from llmrec.training.fit import save_artifact
    from llmrec.training.loop import TrainConfig

    params = {**TINY, "n_levels": 2, "codebook_size": 4}
    check_settings("t5-semantic", {"model": params})
    with pytest.raises(ValueError, match="model.typo"):
        check_settings("t5-semantic", {"model": {"typo": 1}})
    cfg = TrainConfig(epochs=2, batch_size=16, progress=False)
    model, result = fit_t5_semantic(tiny_prepared, params, cfg, text_encoder=_HashEncoder(), text_cache_dir=tmp_path / "cache")
    assert result.epochs_run == 2
    save_artifact(model, tiny_prepared, tmp_path / "art")
    assert isinstance(load_model(tmp_path / "art"), T5SemanticRecommender)
    rec = Recommender.load(tmp_path / "art")
    user = tiny_prepared.users["user"][0]
    recs = rec.recommend(user=user, k=5)
    assert len(recs) == 5 and [r.rank for r in recs] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(recs, recs[1:], strict=False))


def test_collaborative_semantic_ids_come_from_the_lm_item_table(tiny_prepared: Any, tmp_path: Path) -> None:
    """semantic_source="collaborative" quantises the next-item LM's output item table; text+collaborative concatenates."""
    from llmrec.experiment import collaborative_item_embeddings, fit_t5_semantic
    from llmrec.models.next_item_lm import NextItemLM, NextItemLMConfig
    from llmrec.training.loop import TrainConfig

    torch.manual_seed(0)
    lm = NextItemLM(NextItemLMConfig(n_items=tiny_prepared.n_items, d_model=8, n_layers=1, n_heads=1, d_ff=16, max_seq_len=5))
    lm.save_pretrained(tmp_path / "lm")
    table = collaborative_item_embeddings(tmp_path / "lm", tiny_prepared.n_items)
    np.testing.assert_allclose(table, lm.eval().item_table().detach().numpy(), rtol=0, atol=0)

    cfg = TrainConfig(epochs=1, batch_size=16, progress=False, refit_on_valid=False)
    base = {**TINY, "n_levels": 2, "codebook_size": 4}
    model, _ = fit_t5_semantic(
        tiny_prepared, {**base, "semantic_source": "collaborative", "collab_model": str(tmp_path / "lm")}, cfg
    )
    unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    expected = build_semantic_ids(unit, n_levels=2, codebook_size=4, seed=0)
    assert torch.equal(model.semantic_ids.codes, expected.codes)

    enc = _HashEncoder()
    both, _ = fit_t5_semantic(
        tiny_prepared,
        {**base, "semantic_source": "text+collaborative", "collab_model": str(tmp_path / "lm")},
        cfg,
        text_encoder=enc,
        text_cache_dir=tmp_path / "cache",
    )
    text_only, _ = fit_t5_semantic(tiny_prepared, base, cfg, text_encoder=enc, text_cache_dir=tmp_path / "cache")
    assert both.semantic_ids.codes.shape == model.semantic_ids.codes.shape
    assert not torch.equal(both.semantic_ids.codes, model.semantic_ids.codes)
    assert not torch.equal(both.semantic_ids.codes, text_only.semantic_ids.codes)


def test_collaborative_source_rejects_bad_settings(tiny_prepared: Any, tmp_path: Path) -> None:
    from llmrec.experiment import fit_t5_semantic
    from llmrec.models.next_item_lm import NextItemLM, NextItemLMConfig
    from llmrec.training.loop import TrainConfig

    cfg = TrainConfig(epochs=1, batch_size=16, progress=False)
    base = {**TINY, "n_levels": 2, "codebook_size": 4}
    with pytest.raises(ValueError, match="semantic_source"):
        fit_t5_semantic(tiny_prepared, {**base, "semantic_source": "graph"}, cfg)
    with pytest.raises(ValueError, match="collab_model"):
        fit_t5_semantic(tiny_prepared, {**base, "semantic_source": "collaborative"}, cfg)
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        fit_t5_semantic(tiny_prepared, {**base, "semantic_source": "collaborative", "collab_model": str(tmp_path)}, cfg)
    NextItemLM(NextItemLMConfig(n_items=tiny_prepared.n_items + 3, d_model=8, n_layers=1, n_heads=1, d_ff=16)).save_pretrained(
        tmp_path / "other"
    )
    with pytest.raises(ValueError, match="not the same catalogue"):
        fit_t5_semantic(tiny_prepared, {**base, "semantic_source": "collaborative", "collab_model": str(tmp_path / "other")}, cfg)


def test_fit_t5_semantic_with_selected_epoch_skips_selection_and_refits_on_valid(tiny_prepared: Any, tmp_path: Path) -> None:
    """selected_epoch: one run of exactly that many epochs, no validation pass, valid targets become training targets."""
    from llmrec.experiment import fit_t5_semantic
    from llmrec.training.loop import TrainConfig

    params = {**TINY, "n_levels": 2, "codebook_size": 4}
    calls: list[int] = []

    def evaluate(model: Any) -> dict[str, float]:
        calls.append(1)
        return {"ndcg@10": 0.0}

    kw = {"text_encoder": _HashEncoder(), "text_cache_dir": tmp_path / "cache", "evaluate": evaluate}
    cfg = TrainConfig(epochs=4, batch_size=16, progress=False, refit_on_valid=True)
    model, result = fit_t5_semantic(tiny_prepared, params, cfg, selected_epoch=2, **kw)  # type: ignore[arg-type]
    assert result.epochs_run == 2 and not calls
    seen_refit = model.is_seen.clone()
    plain, _ = fit_t5_semantic(
        tiny_prepared, params, TrainConfig(epochs=4, batch_size=16, progress=False, refit_on_valid=False), selected_epoch=2, **kw
    )  # type: ignore[arg-type]
    valid = tiny_prepared.eval_examples("valid")
    only_valid = set(valid.targets.tolist()) - set(np.flatnonzero(plain.is_seen.numpy()).tolist())
    assert only_valid, "fixture: some item must be a validation target only"
    assert all(bool(seen_refit[i]) for i in only_valid)
    with pytest.raises(ValueError, match="selected_epoch"):
        fit_t5_semantic(tiny_prepared, params, cfg, selected_epoch=5, **kw)  # type: ignore[arg-type]
