"""NextItemLM: shapes, causality, left-padding invariance, overfitting one batch, persistence, `generate`, config errors."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from llmrec.models.next_item_lm import NextItemLM, NextItemLMConfig
from llmrec.types import PAD_ID, SeqBatch

N_ITEMS = 50
LOSSES = ("ce", "sampled", "bce")
POSITIONS = ("learned", "rotary")
LOSS_X_POS = list(itertools.product(LOSSES, POSITIONS))


def _config(**overrides: Any) -> NextItemLMConfig:
    base: dict[str, Any] = dict(
        n_items=N_ITEMS, max_seq_len=12, d_model=16, n_layers=1, n_heads=2, d_ff=32, dropout=0.0, emb_dropout=0.0, n_negatives=16
    )
    return NextItemLMConfig(**{**base, **overrides})


def _model(seed: int = 0, **overrides: Any) -> NextItemLM:
    torch.manual_seed(seed)
    return NextItemLM(_config(**overrides)).eval()


def _with_features(model: NextItemLM, seed: int = 1) -> NextItemLM:
    """Random attribute ids and text vectors for every item (row 0, the padding, left empty)."""
    g = torch.Generator().manual_seed(seed)
    c = model.config
    if c.n_attributes:
        attrs = torch.randint(0, c.n_attributes + 1, (N_ITEMS + 1, c.max_item_attributes), generator=g)
        attrs[PAD_ID] = 0
        model.set_item_attributes(attrs)
    if c.text_dim:
        text = torch.randn(N_ITEMS + 1, c.text_dim, generator=g)
        text[PAD_ID] = 0.0
        model.set_item_text(text)
    return model


def _sequences(lengths: tuple[int, ...] = (9, 7, 5, 3), seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, N_ITEMS + 1, (n,), generator=g) for n in lengths]


def _batch(lengths: tuple[int, ...] = (9, 7, 5, 3), seed: int = 0) -> SeqBatch:
    """Left-padded next-item batch: input = s[:-1], target = s[1:]; sum(len - 1) real positions."""
    seqs = _sequences(lengths, seed)
    L = max(lengths) - 1
    inputs = torch.full((len(seqs), L), PAD_ID, dtype=torch.long)
    targets = torch.full((len(seqs), L), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        inputs[i, L - len(s) + 1 :] = s[:-1]
        targets[i, L - len(s) + 1 :] = s[1:]
    return SeqBatch(item_ids=inputs, targets=targets)


def _pad_to(history: torch.Tensor, length: int) -> torch.Tensor:
    return torch.cat([torch.full((length - len(history),), PAD_ID, dtype=torch.long), history]).unsqueeze(0)


# ---- shapes ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("loss", "pos"), LOSS_X_POS)
def test_output_shapes(loss: str, pos: str) -> None:
    model = _model(loss=loss, pos_encoding=pos)
    batch = _batch()  # 8 + 6 + 4 + 2 = 20 real positions, L = 8
    out = model(batch)
    width = {"ce": N_ITEMS + 1, "sampled": 1 + 16, "bce": 2}[loss]  # full softmax | target + negatives | pos, neg
    assert out.logits.shape == (20, width)
    assert out.hidden is not None and out.hidden.shape == (4, 8, 16)
    assert out.loss is not None and out.loss.shape == () and torch.isfinite(out.loss)
    if loss == "ce":
        assert torch.all(out.logits[:, PAD_ID] == float("-inf"))

    scores = model.score(batch.item_ids)
    assert scores.shape == (4, N_ITEMS + 1)
    assert torch.all(scores[:, PAD_ID] == float("-inf"))
    assert torch.isfinite(scores[:, 1:]).all()


def test_ce_with_label_smoothing_has_a_finite_loss() -> None:
    """The PAD column is -inf; label smoothing must spread mass over real items only, not over PAD."""
    model = _model(label_smoothing=0.1).train()
    out = model(_batch())
    assert out.loss is not None and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_sampled_softmax_proposal_never_draws_pad() -> None:
    model = _model(loss="sampled")
    q = model.log_q.exp()
    assert q[PAD_ID] == 0.0
    torch.testing.assert_close(q[1:], torch.full((N_ITEMS,), 1.0 / N_ITEMS))  # uniform until popularity is set
    model.set_item_popularity(torch.ones(N_ITEMS + 1))
    q = model.log_q.exp()
    assert q[PAD_ID] == 0.0
    torch.testing.assert_close(q[1:], torch.full((N_ITEMS,), 1.0 / N_ITEMS))


# ---- causality and padding ----------------------------------------------------------------------------------
@pytest.mark.parametrize("pos", [*POSITIONS, "none"])
def test_causal_changing_item_t_plus_1_leaves_positions_up_to_t_unchanged(pos: str) -> None:
    model = _model(pos_encoding=pos, dropout=0.3, emb_dropout=0.3)  # eval mode: dropout off
    batch = _batch(lengths=(9, 6))  # row 0 full, row 1 left-padded by 3
    x, L = batch.item_ids, batch.item_ids.shape[1]
    h = model.encode(x)
    logits = model(batch).logits  # [N, V+1] at the real positions, row-major
    for t in range(L - 1):
        changed = x.clone()
        real = changed[:, t + 1] != PAD_ID
        changed[real, t + 1] = changed[real, t + 1] % N_ITEMS + 1  # another real item
        h2 = model.encode(changed)
        torch.testing.assert_close(h2[:, : t + 1], h[:, : t + 1])
        assert not torch.allclose(h2[:, t + 1], h[:, t + 1])  # the test can see a change
        # the same through the training logits: rows of positions <= t are unchanged
        keep = (batch.targets != PAD_ID) & (torch.arange(L) <= t)
        logits2 = model(SeqBatch(item_ids=changed, targets=batch.targets)).logits
        real_pos = batch.targets != PAD_ID
        torch.testing.assert_close(logits2[keep[real_pos]], logits[keep[real_pos]])


@pytest.mark.parametrize("pos", POSITIONS)
def test_left_padding_does_not_change_the_score(pos: str) -> None:
    model = _with_features(_model(pos_encoding=pos, n_attributes=5, max_item_attributes=2, text_dim=8))
    history = _sequences((6,))[0]
    alone = model.score(history.unsqueeze(0))
    for length in (7, 9, 12):
        torch.testing.assert_close(model.score(_pad_to(history, length)), alone)
    # in a batch with a longer history, which forces the padding
    longer = _sequences((12,), seed=3)[0]
    batch = torch.cat([_pad_to(history, 12), longer.unsqueeze(0)])
    torch.testing.assert_close(model.score(batch)[:1], alone)


@pytest.mark.parametrize("pos", POSITIONS)
def test_history_longer_than_max_seq_len_keeps_the_most_recent_items(pos: str) -> None:
    model = _model(pos_encoding=pos)  # max_seq_len = 12
    history = _sequences((20,))[0]
    torch.testing.assert_close(model.score(history.unsqueeze(0)), model.score(history[-12:].unsqueeze(0)))


# ---- training ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("loss", "pos"), LOSS_X_POS)
def test_loss_falls_when_overfitting_one_batch(loss: str, pos: str) -> None:
    model = _model(loss=loss, pos_encoding=pos).train()
    batch = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)  # negatives of "sampled" and "bce"
    losses = []
    for _ in range(50):
        out = model(batch)
        assert out.loss is not None
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


# ---- persistence ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("loss", "pos"), LOSS_X_POS)
@pytest.mark.parametrize("features", [False, True], ids=["ids", "attrs+text"])
def test_save_pretrained_from_pretrained_gives_identical_scores(loss: str, pos: str, features: bool, tmp_path: Path) -> None:
    extra: dict[str, Any] = dict(n_attributes=5, max_item_attributes=2, text_dim=8) if features else {}
    model = _with_features(_model(loss=loss, pos_encoding=pos, **extra))
    if loss == "sampled":
        model.set_item_popularity(torch.arange(N_ITEMS + 1))
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]

    loaded = NextItemLM.from_pretrained(tmp_path / "m")
    assert not loaded.training
    assert loaded.config == model.config
    histories = _batch().item_ids
    assert torch.equal(loaded.score(histories), model.score(histories))
    for name, buf in model.named_buffers():
        assert torch.equal(dict(loaded.named_buffers())[name], buf), name


# ---- generate ------------------------------------------------------------------------------------------------
def _pad_would_win(model: NextItemLM) -> NextItemLM:
    """Make every hidden state equal b and give PAD the output row +b, every real item about -b: unmasked, PAD is top."""
    with torch.no_grad():
        b = torch.randn(model.config.d_model, generator=torch.Generator().manual_seed(0))
        model.ln_f.weight.zero_()
        model.ln_f.bias.copy_(b)
        assert model.out_emb is not None
        model.out_emb.weight.copy_(-b + 0.01 * torch.randn(N_ITEMS + 1, model.config.d_model))
        model.out_emb.weight[PAD_ID] = b
    return model


@pytest.mark.parametrize("k", [10, N_ITEMS, N_ITEMS + 5])
def test_generate_returns_k_distinct_real_items_in_score_order(k: int) -> None:
    model = _pad_would_win(_model(tie_weights=False))
    histories = _batch().item_ids
    ids, scores = model.generate(histories, k)
    want = min(k, N_ITEMS)
    assert ids.shape == scores.shape == (4, want)
    assert not (ids == PAD_ID).any()
    assert all(len(set(row.tolist())) == want for row in ids)
    assert torch.all(scores[:, :-1] >= scores[:, 1:])
    torch.testing.assert_close(scores, model.score(histories).gather(1, ids))


# ---- configuration -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(d_model=18, n_heads=4), r"d_model \(18\) must be divisible by n_heads \(4\)"),
        (dict(loss="softmax"), r"loss must be one of .*'softmax'"),
        (dict(pos_encoding="alibi"), "pos_encoding must be learned|rotary|none"),
        (dict(d_model=6, n_heads=2, pos_encoding="rotary"), "rotary positions need an even head dimension"),
        (dict(n_attributes=5), "n_attributes and max_item_attributes"),
        (dict(n_items=0), "n_items: must be between 1 and"),
    ],
)
def test_config_validation_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_config_from_dict_names_the_unknown_key_and_round_trips() -> None:
    with pytest.raises(ValueError, match="unknown NextItemLMConfig keys: d_modle"):
        NextItemLMConfig.from_dict({"n_items": 5, "d_modle": 16})
    c = _config(loss="bce", pos_encoding="rotary")
    assert NextItemLMConfig.from_dict(c.to_dict()) == c


def test_chunked_ce_equals_full_softmax_loss_and_gradients() -> None:
    torch.manual_seed(0)
    cfg = dict(n_items=50, d_model=16, n_heads=2, d_ff=32, n_layers=1, dropout=0.0, emb_dropout=0.0, label_smoothing=0.1)
    full = NextItemLM(NextItemLMConfig(**cfg, ce_chunk_size=10_000))
    chunked = NextItemLM(NextItemLMConfig(**cfg, ce_chunk_size=7))
    chunked.load_state_dict(full.state_dict())
    x = torch.randint(1, 51, (4, 9))
    y = torch.randint(1, 51, (4, 9))
    x[0, :3] = 0
    y[0, :3] = 0
    out_full, out_chunked = full(SeqBatch(x, y)), chunked(SeqBatch(x, y))
    assert out_full.logits is None and out_chunked.logits is None  # training builds no [N, V+1] scores
    torch.testing.assert_close(out_chunked.loss, out_full.loss)
    out_full.loss.backward()
    out_chunked.loss.backward()
    for (name, p), q in zip(full.named_parameters(), chunked.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_item_table_cache_is_invalidated_by_weight_and_feature_changes() -> None:
    torch.manual_seed(0)
    m = NextItemLM(NextItemLMConfig(n_items=20, d_model=8, n_heads=2, d_ff=16, n_layers=1, n_attributes=3, max_item_attributes=2))
    m.eval()
    x = torch.randint(1, 21, (2, 5))
    first = m.score(x)
    assert m.score(x) is not first and torch.equal(m.score(x), first)
    with torch.no_grad():
        m.item_emb.weight[3] += 1.0  # in-place weight change (as an optimizer step does)
    fresh = NextItemLM(NextItemLMConfig(**m.config.to_dict()))
    fresh.load_state_dict(m.state_dict())
    fresh.eval()
    torch.testing.assert_close(m.score(x), fresh.score(x))
    m.set_item_attributes(torch.randint(0, 4, (21, 2)))  # feature buffer change
    fresh.set_item_attributes(m.item_attributes.clone())
    torch.testing.assert_close(m.score(x), fresh.score(x))
    m.load_state_dict(NextItemLM(NextItemLMConfig(**m.config.to_dict())).state_dict())  # weights replaced
    fresh.load_state_dict(m.state_dict())
    torch.testing.assert_close(m.score(x), fresh.score(x))


# ---- positions counted from the newest item, seen-masked softmax ------------------------------------------------
def test_positions_from_the_end_give_the_newest_item_id_zero_at_any_length() -> None:
    from llmrec.models.next_item_lm import positions

    is_real = torch.tensor([[False, False, True, True, True], [True, True, True, True, True]])
    assert positions(is_real, "end")[:, -1].tolist() == [0, 0]
    assert positions(is_real, "end")[0, 2:].tolist() == [2, 1, 0]
    assert positions(is_real, "start")[:, -1].tolist() == [2, 4]


@pytest.mark.parametrize("pos", POSITIONS)
def test_pos_origin_end_keeps_scores_independent_of_left_padding(pos: str) -> None:
    model = _model(pos_encoding=pos, pos_origin="end")
    history = _sequences((6,))[0]
    alone = model.score(history.unsqueeze(0))
    for length in (7, 12):
        torch.testing.assert_close(model.score(_pad_to(history, length)), alone)
    # and the origin matters: the same weights read from the start score differently
    start = _model(pos_encoding=pos, pos_origin="start")
    assert not torch.allclose(start.score(history.unsqueeze(0)), alone)


def test_artifact_without_pos_origin_loads_counting_from_the_start(tmp_path: Path) -> None:
    import json

    model = _model()
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    del cfg["pos_origin"]  # an artifact written before the option existed
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert NextItemLM.from_pretrained(tmp_path).config.pos_origin == "start"


def test_seen_masked_ce_equals_a_per_example_reference() -> None:
    """Every history item of an example leaves its softmax, the target stays even when it is a repeat, PAD never
    counts; chunking (3 positions per chunk) gives the same value and gradients as one chunk."""
    import torch.nn.functional as F

    x = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 2, 6]])
    y = torch.tensor([[0, 0, 4, 5, 7], [2, 3, 2, 6, 8]])  # row 1: target 2 at position 2 is a repeat
    model = _model(loss_exclude_seen=True, ce_chunk_size=3)
    loss = model(SeqBatch(item_ids=x, targets=y)).loss
    h = model.encode(x)
    real = y != PAD_ID
    table = model.item_table()
    want = []
    for hs, t, (b, i) in zip(h[real], y[real], real.nonzero().tolist(), strict=True):
        logits = hs @ table.T
        logits[PAD_ID] = float("-inf")
        for item in x[b, : i + 1].tolist():
            if item != PAD_ID and item != t.item():
                logits[item] = float("-inf")
        want.append(F.cross_entropy(logits.unsqueeze(0), t.unsqueeze(0)))
    assert loss is not None
    torch.testing.assert_close(loss, torch.stack(want).mean())
    unchunked = _model(loss_exclude_seen=True, ce_chunk_size=100)(SeqBatch(item_ids=x, targets=y)).loss
    assert unchunked is not None
    torch.testing.assert_close(loss, unchunked)


def test_seen_masked_ce_refuses_other_losses() -> None:
    with pytest.raises(ValueError, match="loss_exclude_seen"):
        _config(loss="bce", loss_exclude_seen=True)
