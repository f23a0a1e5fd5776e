"""Text-to-embedding map for cold items: exact recovery of a linear relation, warm rows untouched, roundtrip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.data.sequences import pad_left
from llmrec.models.cold_items import apply_text_map, fit_text_map
from llmrec.models.next_item_lm import NextItemLM, NextItemLMConfig

V, D, E = 30, 8, 12
COLD = [3, 7, 19]


def _lm(**kw: object) -> NextItemLM:
    torch.manual_seed(0)
    model = NextItemLM(NextItemLMConfig(n_items=V, d_model=D, n_layers=1, n_heads=1, d_ff=16, max_seq_len=6, **kw))  # type: ignore[arg-type]
    if model.config.n_attributes:  # every item gets 1-2 of 4 attributes (so cold rows have a feature part)
        attrs = torch.zeros(V + 1, model.config.max_item_attributes, dtype=torch.long)
        attrs[1:, 0] = torch.arange(V) % 4 + 1
        attrs[1::2, 1] = 4
        model.set_item_attributes(attrs)
    return model.eval()


def _linear_text(model: NextItemLM) -> tuple[torch.Tensor, torch.Tensor]:
    """Text from which the warm items' trained rows are an exact affine function: text = [table, noise] @ R."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        table = model.item_table().clone()  # [V+1, D]
    basis = torch.linalg.qr(torch.randn(E, E, generator=g)).Q  # orthogonal: the map back is exact
    noise = torch.randn(V + 1, E - D, generator=g)
    text = torch.cat([table, noise], 1) @ basis.T  # [V+1, E]
    return text, table


def test_fit_text_map_recovers_an_affine_relation() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, E, generator=g)
    a, b = torch.randn(E, D, generator=g), torch.randn(D, generator=g)
    m = fit_text_map(x, x @ a + b, ridge=0.0)
    torch.testing.assert_close(m(x), x @ a + b, atol=1e-4, rtol=0)
    shrunk = fit_text_map(x, x @ a + b, ridge=1e4)
    assert shrunk.weight[:-1].abs().mean() < m.weight[:-1].abs().mean()  # ridge shrinks the slope, not the bias


@pytest.mark.parametrize("kw", [{}, {"tie_weights": False}, {"n_attributes": 4, "max_item_attributes": 2}])
def test_apply_text_map_sets_cold_rows_and_keeps_warm_rows(kw: dict[str, object]) -> None:
    model = _lm(**kw)
    text, _ = _linear_text(model)
    with torch.no_grad():
        true_cold = model.item_table()[COLD].clone()
        model.item_emb.weight[COLD] = 0.0  # what a never-trained id looks like to the map: no signal
        if model.out_emb is not None:
            model.out_emb.weight[COLD] = 0.0
        before = model.item_table().clone()
    mapping = apply_text_map(model, text.numpy(), COLD, ridge=0.0)
    with torch.no_grad():
        after = model.item_table()
    warm = [i for i in range(1, V + 1) if i not in COLD]
    assert torch.equal(after[warm], before[warm])
    torch.testing.assert_close(after[COLD], mapping(text[COLD]), atol=1e-5, rtol=0)
    torch.testing.assert_close(after[COLD], true_cold, atol=1e-3, rtol=0)  # the linear relation is recovered
    assert not torch.allclose(before[COLD], true_cold)


def test_text_mapped_model_saves_and_loads_with_identical_scores(tmp_path: Path) -> None:
    model = _lm()
    text, _ = _linear_text(model)
    apply_text_map(model, text, np.array(COLD), ridge=1.0)
    ids = pad_left([np.array([1, 3, 5]), np.array([19, 2])], 6)
    model.save_pretrained(tmp_path)
    loaded = NextItemLM.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded.score(ids), model.score(ids))


def test_apply_text_map_rejects_bad_input() -> None:
    model = _lm()
    text, _ = _linear_text(model)
    with pytest.raises(ValueError, match=r"text: expected \[31, E\]"):
        apply_text_map(model, text[1:], COLD)
    with pytest.raises(ValueError, match="ids must be in 1..30"):
        apply_text_map(model, text, [0, 4])
    with pytest.raises(ValueError, match="empty"):
        apply_text_map(model, text, [])
    with pytest.raises(ValueError, match="ridge"):
        fit_text_map(text, text, ridge=-1.0)


@pytest.mark.parametrize("tie_weights", [True, False])
def test_zero_id_rows_leaves_the_cold_items_their_text_alone(tie_weights: bool) -> None:
    """After zeroing, a cold item's table row is its projected text (its features), its input row too; the eval
    cache of the table is refreshed and every warm row is unchanged."""
    from llmrec.models.cold_items import zero_id_rows

    model = _lm(text_dim=E, tie_weights=tie_weights)
    g = torch.Generator().manual_seed(2)
    model.set_item_text(torch.cat([torch.zeros(1, E), torch.randn(V, E, generator=g)]))
    with torch.no_grad():
        before = model.item_table().clone()  # fills the eval cache
        zero_id_rows(model, np.array(COLD))
        after = model.item_table()
        text_part = model.text_proj(model.item_text[COLD])  # [M, D]
    warm = [i for i in range(1, V + 1) if i not in COLD]
    torch.testing.assert_close(after[COLD], text_part)
    assert not torch.allclose(before[COLD], after[COLD])  # the id rows did contribute before
    torch.testing.assert_close(after[warm], before[warm], atol=0, rtol=0)
    assert not model.item_emb.weight.detach()[COLD].any()  # the input side reads the text alone too
    with torch.no_grad():
        emb, _, pos = model.embed(torch.tensor([[0, COLD[0]]]))
        position = model.pos_emb(pos[0, 1]) if model.pos_emb is not None else torch.zeros(D)
    torch.testing.assert_close(emb[0, 1], text_part[0] + position)


def test_zero_id_rows_refuses_padding_and_unknown_ids() -> None:
    from llmrec.models.cold_items import zero_id_rows

    model = _lm()
    for bad in ([0, 3], [V + 1]):
        with pytest.raises(ValueError, match="ids must be in 1"):
            zero_id_rows(model, np.array(bad))
