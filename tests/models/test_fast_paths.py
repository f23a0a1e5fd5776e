"""The training step's fast paths compute what the plain ones do: `MaskDropout` (distribution, scaling, gradient,
seeding), TV-Rec's last-slot encoder, the sparse attribute table, the fused table cross-entropy, and the inference
table cache after a fused optimizer step."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from llmrec.models.item_sequence import _TableCrossEntropy
from llmrec.models.layers import MaskDropout
from llmrec.models.tvrec import TVRec, TVRecConfig
from llmrec.types import PAD_ID, SeqBatch

N_ITEMS = 30


# ---- MaskDropout ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.5, 0.73])
def test_mask_dropout_drops_a_share_p_and_scales_the_rest(p: float) -> None:
    torch.manual_seed(0)
    drop = MaskDropout(p).train()
    x = torch.rand(64, 50, 33) + 1.0  # no zeros of its own; 105,600 elements, not a multiple of 4 per row
    y = drop(x)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - p) < 0.01
    kept = ~dropped
    torch.testing.assert_close(y[kept], x[kept] / (1 - round(p * 65536) / 65536))
    # every 16-bit slice of the 64-bit draws is used without bias (four interleaved positions)
    flat = dropped.flatten()
    for slot in range(4):
        assert abs(flat[slot::4].float().mean().item() - p) < 0.015


def test_mask_dropout_gradient_is_its_mask_times_the_scale() -> None:
    torch.manual_seed(1)
    x = torch.randn(10, 7, requires_grad=True)
    y = MaskDropout(0.5).train()(x)
    y.sum().backward()
    assert x.grad is not None
    expected = torch.where(y == 0, 0.0, 2.0)
    torch.testing.assert_close(x.grad, expected)


def test_mask_dropout_is_identity_in_eval_and_at_p0_all_zero_at_p1_and_seeded() -> None:
    x = torch.randn(5, 9)
    assert MaskDropout(0.5).eval()(x) is x
    assert MaskDropout(0.0).train()(x) is x
    assert torch.count_nonzero(MaskDropout(1.0).train()(x)) == 0
    torch.manual_seed(3)
    a = MaskDropout(0.4).train()(x)
    torch.manual_seed(3)
    b = MaskDropout(0.4).train()(x)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="dropout probability"):
        MaskDropout(1.5)


# ---- TV-Rec's last-slot encoder -------------------------------------------------------------------------------------
def _tvrec(**overrides: Any) -> TVRec:
    base: dict[str, Any] = dict(n_items=N_ITEMS, max_seq_len=8, d_model=16, n_layers=3, d_ff=32, dropout=0.0, emb_dropout=0.0)
    torch.manual_seed(0)
    model = TVRec(TVRecConfig(**{**base, **overrides}))
    with torch.no_grad():
        for block in model.blocks:
            block.coef.normal_(0.0, 1.0)  # taps that matter
    return model


@pytest.mark.parametrize("width", [5, 8, 12])  # shorter than, equal to and longer than the window
def test_encode_last_equals_the_last_column_of_encode(width: int) -> None:
    model = _tvrec().eval()
    ids = torch.randint(1, N_ITEMS + 1, (6, width))
    ids[0, : width - 2] = PAD_ID  # a short history
    ids[1, :-1] = PAD_ID  # one item
    torch.testing.assert_close(model.encode_last(ids), model.encode(ids)[:, -1])


def test_last_position_training_loss_and_gradients_match_the_full_encoder() -> None:
    """The loss read from `encode_last` (what training runs) equals the one read from every slot's states."""
    fast = _tvrec().train()
    slow = _tvrec().train()
    slow.encode_last = lambda item_ids: slow.encode(item_ids)[:, -1]  # type: ignore[method-assign]
    ids = torch.randint(1, N_ITEMS + 1, (5, 8))
    ids[2, :5] = PAD_ID
    targets = torch.full_like(ids, PAD_ID)
    targets[:, -1] = torch.randint(1, N_ITEMS + 1, (5,))
    targets[3, -1] = PAD_ID  # a row without a target
    a, b = fast(SeqBatch(ids, targets)), slow(SeqBatch(ids, targets))
    assert a.loss is not None and b.loss is not None
    torch.testing.assert_close(a.loss, b.loss)
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(fast.named_parameters(), slow.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, msg=name)


# ---- the sparse attribute table ---------------------------------------------------------------------------------
def test_training_table_with_attributes_equals_the_gathered_mean_and_its_gradient() -> None:
    model = _tvrec(n_attributes=6, max_item_attributes=3)
    attrs = torch.randint(0, 7, (N_ITEMS + 1, 3))
    attrs[0] = 0
    attrs[5] = 0  # an item without attributes
    attrs[6] = torch.tensor([2, 2, 0])  # a repeated attribute counts twice, as in the gather
    model.set_item_attributes(attrs)
    model.train()
    fast = model.item_table()
    fast.square().sum().backward()
    grad_fast = model.attr_emb.weight.grad.clone()  # type: ignore[union-attr]
    model.attr_emb.weight.grad = None
    w = model.item_emb.weight
    slow = w + model._item_features(torch.arange(N_ITEMS + 1))
    slow.square().sum().backward()
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(grad_fast, model.attr_emb.weight.grad)
    # a change of the attributes is seen (the sparse matrix is cached by the buffer's version)
    attrs2 = attrs.clone()
    attrs2[1] = torch.tensor([4, 0, 0])
    model.set_item_attributes(attrs2)
    with torch.no_grad():
        expected = model.item_emb.weight[1] + model.attr_emb.weight[4]
        torch.testing.assert_close(model.item_table()[1], expected)


# ---- the fused table cross-entropy ---------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_table_cross_entropy_matches_torch_value_and_gradients(eps: float) -> None:
    torch.manual_seed(0)
    hs = torch.randn(11, 8, requires_grad=True, dtype=torch.float64)
    items = torch.randn(23, 8, requires_grad=True, dtype=torch.float64)
    y = torch.randint(0, 23, (11,))
    loss = _TableCrossEntropy.apply(hs, items, y, eps)  # type: ignore[no-untyped-call]
    ref = F.cross_entropy(hs @ items.T, y, label_smoothing=eps)
    torch.testing.assert_close(loss, ref)
    g_fast = torch.autograd.grad(loss, (hs, items))
    g_ref = torch.autograd.grad(ref, (hs, items))
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b)


def test_table_cross_entropy_under_bf16_autocast_matches_torch_and_keeps_input_dtypes() -> None:
    torch.manual_seed(0)
    hs = torch.randn(11, 8, requires_grad=True)
    items = torch.randn(23, 8, requires_grad=True)
    y = torch.randint(0, 23, (11,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h16 = hs.to(torch.bfloat16)  # a bf16 activation, as a bf16 block would hand over
        loss = _TableCrossEntropy.apply(h16, items, y, 0.1)  # type: ignore[no-untyped-call]
        ref = F.cross_entropy(h16 @ items.T, y, label_smoothing=0.1)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref.float(), atol=2e-2, rtol=2e-2)
    g_hs, g_items = torch.autograd.grad(loss, (hs, items), retain_graph=True)
    r_hs, r_items = torch.autograd.grad(ref, (hs, items))
    assert g_hs.dtype == g_items.dtype == torch.float32
    torch.testing.assert_close(g_hs, r_hs, atol=2e-2, rtol=5e-2)
    torch.testing.assert_close(g_items, r_items, atol=2e-2, rtol=5e-2)


# ---- the inference cache after a fused optimizer step -----------------------------------------------------------
def test_scores_follow_a_fused_optimizer_step() -> None:
    """A fused AdamW updates the weights without bumping their version counters; `train()` drops the cached
    table, so the next evaluation scores with the new weights."""
    model = _tvrec(n_attributes=4, max_item_attributes=2)
    model.set_item_attributes(torch.randint(0, 5, (N_ITEMS + 1, 2)))
    ids = torch.randint(1, N_ITEMS + 1, (3, 6))
    model.eval()
    before = model.score(ids).clone()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
    model.train()
    targets = torch.full_like(ids, PAD_ID)
    targets[:, -1] = torch.tensor([1, 2, 3])
    loss = model(SeqBatch(ids, targets)).loss
    assert loss is not None
    loss.backward()
    opt.step()
    model.eval()
    after = model.score(ids)
    with torch.no_grad():
        fresh = model.encode_last(ids) @ model._build_item_table().T
    assert not torch.allclose(after[:, 1:], before[:, 1:])
    torch.testing.assert_close(after[:, 1:], fresh[:, 1:])


# ---- the title term in the scores (text_blend) ------------------------------------------------------------------
def _text_tvrec(blend: float, rare: float = 0.0) -> TVRec:
    model = _tvrec(text_dim=6, text_blend=blend, text_rare_weight=rare).eval()
    g = torch.Generator().manual_seed(5)
    text = torch.randn(N_ITEMS + 1, 6, generator=g)
    text[0] = 0.0
    text[7] = text[3] * 2.0  # item 7's title says what item 3's says
    model.set_item_text(text)
    return model


def test_text_blend_adds_the_standardised_title_similarity_to_the_newest_item() -> None:
    ids = torch.tensor([[11, 12, 13, 14, 15, 3], [0, 0, 0, 0, 0, 3], [2, 4, 6, 8, 10, 9], [5, 6, 7, 8, 9, 1]])
    plain, blended = _text_tvrec(0.0), _text_tvrec(0.5)
    blended.load_state_dict(plain.state_dict())
    raw = plain.score(ids)
    got = blended.score(ids)
    unit = F.normalize(blended.item_text, dim=1)
    sim = unit[ids[:, -1]] @ unit.T
    for row in range(len(ids)):
        sim[row, ids[row]] = 0.0  # the history's own items get no lift

    def z(x: torch.Tensor) -> torch.Tensor:
        return (x - x[:, 1:].mean(1, keepdim=True)) / x[:, 1:].std(1, keepdim=True, correction=0)

    torch.testing.assert_close(got[:, 1:], (z(raw) + 0.5 * z(sim))[:, 1:])
    assert torch.all(got[:, PAD_ID] == float("-inf"))
    # the item whose title matches the newest item's (3) moves up the most; item 3 itself, in the history, does not
    gain = got[:2, 1:] - z(raw)[:2, 1:]
    assert int(gain.argmax(1)[0]) + 1 == 7 and int(gain.argmax(1)[1]) + 1 == 7
    assert blended.blends_text and not plain.blends_text


def test_text_blend_needs_item_text_and_an_empty_history_adds_nothing() -> None:
    ids_only = _tvrec(text_blend=0.5).eval()  # no text: the setting is inert
    ids = torch.randint(1, N_ITEMS + 1, (2, 5))
    assert not ids_only.blends_text
    torch.testing.assert_close(ids_only.score(ids)[:, 1:], (ids_only.encode_last(ids) @ ids_only.item_table().T)[:, 1:])
    model = _text_tvrec(0.5)
    empty = torch.zeros(1, 5, dtype=torch.long)  # TV-Rec's state of an empty history is 0: a constant row
    assert torch.count_nonzero(model.encode_last(empty)) == 0
    torch.testing.assert_close(model.score(empty)[:, 1:], torch.zeros(1, N_ITEMS))  # standardised 0, + 0.5 x 0


def test_text_blend_round_trips_and_older_artifacts_score_without_it(tmp_path: Any) -> None:
    import json

    model = _text_tvrec(0.3)
    model.save_pretrained(tmp_path / "m")
    assert TVRec.from_pretrained(tmp_path / "m").config.text_blend == 0.3
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg["text_blend"]  # written before the option existed
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    old = TVRec.from_pretrained(tmp_path / "m")
    assert old.config.text_blend == 0.0 and not old.blends_text
    with pytest.raises(ValueError, match="text_blend"):
        TVRecConfig(n_items=5, text_blend=-1.0)


def test_long_tail_items_get_text_rare_weight_more_of_the_title_term() -> None:
    ids = torch.tensor([[11, 12, 13, 14, 15, 3], [2, 4, 6, 8, 10, 9], [5, 6, 7, 8, 9, 1]])
    plain, model = _text_tvrec(0.0), _text_tvrec(0.2, rare=0.5)
    model.load_state_dict(plain.state_dict() | {"item_rare": model.item_rare})
    counts = torch.zeros(N_ITEMS + 1, dtype=torch.long)
    counts[1:] = torch.arange(1, N_ITEMS + 1)  # item i has i training events
    model.set_long_tail(counts)
    rare = torch.zeros(N_ITEMS + 1)
    rare[1:6] = 1.0  # text_rare_count 5: items 1..5, never the padding row
    torch.testing.assert_close(model.item_rare, rare)
    unit = F.normalize(model.item_text, dim=1)
    sim = unit[ids[:, -1]] @ unit.T
    for row in range(len(ids)):
        sim[row, ids[row]] = 0.0

    def z(x: torch.Tensor) -> torch.Tensor:
        return (x - x[:, 1:].mean(1, keepdim=True)) / x[:, 1:].std(1, keepdim=True, correction=0)

    want = z(plain.score(ids)) + (0.2 + 0.5 * rare) * z(sim)
    torch.testing.assert_close(model.score(ids)[:, 1:], want[:, 1:])
    # the fitted model knows its long tail from the training counts it was built with
    from llmrec.models.spec import DatasetMeta

    text = model.item_text.clone()
    built = TVRec.build(model.config, DatasetMeta(N_ITEMS, None, (), text, counts.numpy()))
    torch.testing.assert_close(built.item_rare, rare)
    assert not hasattr(_text_tvrec(0.2), "item_rare")  # weight 0: no buffer, the artifact is as before
    with pytest.raises(ValueError, match="no long-tail title weight"):
        _text_tvrec(0.2).set_long_tail(counts)
    with pytest.raises(ValueError, match="text_rare_weight"):
        TVRecConfig(n_items=5, text_rare_weight=-0.1)


def test_text_rare_weight_round_trips_and_older_artifacts_load_without_it(tmp_path: Any) -> None:
    import json

    model = _text_tvrec(0.1, rare=0.3)
    model.set_long_tail(torch.arange(N_ITEMS + 1))
    model.save_pretrained(tmp_path / "m")
    back = TVRec.from_pretrained(tmp_path / "m")
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    torch.testing.assert_close(back.score(ids), model.score(ids))
    old = _text_tvrec(0.1)  # written before the option: no item_rare, no text_rare_weight in config.json
    old.save_pretrained(tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    del cfg["text_rare_weight"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    loaded = TVRec.from_pretrained(tmp_path / "old")
    assert loaded.config.text_rare_weight == 0.0 and not hasattr(loaded, "item_rare")
    torch.testing.assert_close(loaded.score(ids), old.score(ids))


def test_approximate_retrieval_is_off_for_a_model_that_blends_titles() -> None:
    import numpy as np
    import polars as pl

    from llmrec.recommend import Recommender

    items = pl.DataFrame({"item_idx": list(range(1, N_ITEMS + 1)), "item": [str(i) for i in range(1, N_ITEMS + 1)]})
    items = items.with_columns(pl.lit(None, pl.String).alias("title"))
    rec = Recommender(_text_tvrec(0.5), items, {"u": np.array([1, 2, 3])}, {})
    assert rec.use_ann("auto", threshold=1) is None  # "auto" scores every item
    with pytest.raises(ValueError, match="title similarity"):
        rec.use_ann("flat")
    got = [r.item_id for r in rec.recommend(user="u", k=5)]
    scores = rec.model.score(torch.tensor([[1, 2, 3]]))[0]
    scores[[1, 2, 3]] = float("-inf")  # seen items left out
    assert got == [str(int(i)) for i in scores.topk(5).indices]


def test_the_onnx_scorer_includes_the_title_term(tmp_path: Any) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    import numpy as np

    from llmrec.export import _quiet_exporter, onnx_program  # what `llmrec export --onnx` writes

    model = _text_tvrec(0.5, rare=0.4)
    model.set_long_tail(torch.arange(N_ITEMS + 1) % 4 * 3)  # items with count <= 5 (0 or 3) are long-tail
    with _quiet_exporter():
        onnx_program(model).save(str(tmp_path / "scorer.onnx"))
    session = ort.InferenceSession(str(tmp_path / "scorer.onnx"), providers=["CPUExecutionProvider"])
    ids = np.zeros((3, 8), dtype=np.int64)
    ids[0, -3:] = [1, 2, 3]
    ids[1, -1] = 7
    ids[2, -5:] = [9, 8, 4, 3, 5]
    want = model.score(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(session.run(None, {"item_ids": ids})[0][:, 1:], want[:, 1:], atol=1e-4)


def test_text_blend_is_finite_for_a_one_item_catalogue() -> None:
    model = TVRec(TVRecConfig(n_items=1, max_seq_len=4, d_model=8, n_layers=1, d_ff=16, text_dim=3, text_blend=0.5)).eval()
    model.set_item_text(torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert torch.isfinite(model.score(torch.tensor([[0, 0, 1, 1]]))[:, 1:]).all()
