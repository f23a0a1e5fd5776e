"""BSARec: shapes, what the last position reads, the Fourier filter, overfitting, persistence, and the whole
train -> evaluate / recommend / explain / serve path through the CLI and the service as they are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner, Result

from llmrec.data import PreparedDataset
from llmrec.models.bsarec import BSARec, BSARecConfig
from llmrec.types import PAD_ID, SeqBatch

N_ITEMS = 50
runner = CliRunner()


def _model(seed: int = 0, **overrides: Any) -> BSARec:
    base: dict[str, Any] = dict(
        n_items=N_ITEMS, max_seq_len=12, d_model=16, n_layers=1, n_heads=2, d_ff=32, dropout=0.0, emb_dropout=0.0
    )
    torch.manual_seed(seed)
    return BSARec(BSARecConfig(**{**base, **overrides})).eval()


def _histories(lengths: tuple[int, ...] = (9, 7, 5, 3), seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, N_ITEMS + 1, (n,), generator=g) for n in lengths]


def _pad(histories: list[torch.Tensor], length: int | None = None) -> torch.Tensor:
    L = length or max(len(h) for h in histories)
    out = torch.full((len(histories), L), PAD_ID, dtype=torch.long)
    for i, h in enumerate(histories):
        out[i, L - len(h) :] = h
    return out


def _prefix_batch(seed: int = 0) -> SeqBatch:
    """Prefix examples as the training loop builds them: one target per row, at the last position."""
    seqs = _histories(seed=seed)
    inputs = _pad([s[:-1] for s in seqs])
    targets = torch.full_like(inputs, PAD_ID)
    targets[:, -1] = torch.stack([s[-1] for s in seqs])
    return SeqBatch(item_ids=inputs, targets=targets)


# ---- shapes and the contract -----------------------------------------------------------------------------------
def test_output_shapes_and_contract() -> None:
    from llmrec.models import ItemEmbeddingModel, RecModel, Trainable

    model = _model()
    batch = _prefix_batch()  # 4 rows, L = 8
    out = model(batch)
    assert out.logits is not None and out.logits.shape == (4, N_ITEMS + 1)  # one target per row
    assert out.hidden is not None and out.hidden.shape == (4, 1, 16)  # last position only: the one it trains
    assert out.loss is not None and out.loss.shape == () and torch.isfinite(out.loss)
    scores = model.score(batch.item_ids)
    assert scores.shape == (4, N_ITEMS + 1) and torch.all(scores[:, PAD_ID] == float("-inf"))
    assert model.item_table().shape == (N_ITEMS + 1, 16) and model.encode(batch.item_ids).shape == (4, 8, 16)
    torch.testing.assert_close(scores[:, 1:], (model.encode(batch.item_ids)[:, -1] @ model.item_table().T)[:, 1:])
    assert isinstance(model, RecModel) and isinstance(model, Trainable) and isinstance(model, ItemEmbeddingModel)
    assert model.model_type == "bsarec"


def test_the_loss_is_computed_at_the_last_position_only() -> None:
    model = _model()
    prefixes = _prefix_batch()
    windows = SeqBatch(item_ids=prefixes.item_ids, targets=prefixes.targets.clone())  # type: ignore[union-attr]
    assert windows.targets is not None
    windows.targets[:, :-1] = torch.where(prefixes.item_ids[:, 1:] != PAD_ID, prefixes.item_ids[:, 1:], PAD_ID)
    out_w, out_p = model(windows), model(prefixes)
    assert out_w.logits is not None and out_w.logits.shape[0] == 4  # earlier targets were dropped
    torch.testing.assert_close(out_w.loss, out_p.loss)


# ---- what the last position reads --------------------------------------------------------------------------------
def test_a_history_scores_the_same_however_its_batch_is_padded() -> None:
    """The filter runs at the fixed length max_seq_len over zeroed padding: a history's scores do not depend on
    the padding of its batch nor on its neighbours (nothing after its last item exists to depend on)."""
    model = _model(n_layers=2)
    h = _histories((5,))
    alone = model.score(_pad(h))[:, 1:]
    torch.testing.assert_close(model.score(_pad(h, 12))[:, 1:], alone)  # padded to max_seq_len
    torch.testing.assert_close(model.score(_pad([h[0], *_histories((11, 2), seed=3)]))[:1, 1:], alone)


@pytest.mark.parametrize("alpha", [1.0, 0.7])
def test_the_last_position_depends_on_every_earlier_item(alpha: float) -> None:
    # alpha = 1: the filter branch only; beta = 0: a pure low-pass filter, which mixes every position. At the
    # paper's sizes (N = 50, c = 5) its kernel sin((2c-1)πk/N) / sin(πk/N) has no zero for 0 < k < N (at N = 12 it
    # would vanish at k = 4 and 8: one ideal low-pass layer can skip a position).
    model = _model(alpha=alpha, n_layers=1, max_seq_len=50, c=5)
    with torch.no_grad():
        model.blocks[0].beta.zero_()  # type: ignore[union-attr]
    h = _pad(_histories((8,)))
    base = model.score(h)[:, 1:]
    for t in range(h.shape[1] - 1):
        changed = h.clone()
        changed[0, t] = changed[0, t] % N_ITEMS + 1
        assert not torch.allclose(model.score(changed)[:, 1:], base), f"position {t} has no effect"


def test_an_identity_filter_and_no_attention_reads_the_last_item_only() -> None:
    """beta = 1 keeps every frequency: with alpha = 1 (no attention) nothing mixes positions."""
    model = _model(alpha=1.0)
    h = _pad(_histories((8,)))
    changed = h.clone()
    changed[0, :-1] = changed[0, :-1] % N_ITEMS + 1
    torch.testing.assert_close(model.score(changed)[:, 1:], model.score(h)[:, 1:])


def test_earlier_positions_see_later_items_so_training_needs_prefixes() -> None:
    model = _model(alpha=1.0)
    with torch.no_grad():
        model.blocks[0].beta.zero_()  # type: ignore[union-attr]
    h = _pad(_histories((8,)))
    changed = h.clone()
    changed[0, -1] = changed[0, -1] % N_ITEMS + 1
    assert not torch.allclose(model.encode(changed)[0, 0], model.encode(h)[0, 0])


def test_the_filter_is_low_pass_plus_beta_high_pass_over_a_left_padded_window() -> None:
    """Against the definition in numpy: X left-padded to N = max_seq_len, rfft, keep the lowest c bins, scale the
    rest by beta, irfft; the real (right-aligned) positions must match."""
    model = _model(c=3)
    block: Any = model.blocks[0]
    with torch.no_grad():
        block.beta.copy_(torch.linspace(-1.0, 2.0, 16))
    x = torch.randn(1, 5, 16)
    x[:, :2] = 0.0  # two padding positions, zero as encode leaves them
    ours = block.spectral_filter(x)[0, 2:].detach().numpy()
    window = np.zeros((12, 16), dtype=np.float64)
    window[-3:] = x[0, 2:].numpy()
    spec = np.fft.rfft(window, axis=0)
    gain = np.ones((spec.shape[0], 16))
    gain[3:] = block.beta.detach().numpy()
    expected = np.fft.irfft(spec * gain, n=12, axis=0)[-3:]
    np.testing.assert_allclose(ours, expected, atol=1e-5)


# ---- training and persistence ------------------------------------------------------------------------------------
def test_loss_falls_when_overfitting_one_batch() -> None:
    model = _model().train()
    batch = _prefix_batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = model(batch).loss
        assert loss is not None
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])
    assert all(p.grad is not None for n, p in model.named_parameters() if ".beta" in n)  # beta is learned


def test_save_then_load_gives_identical_scores(tmp_path: Path) -> None:
    from llmrec.models import load_model

    model = _model(alpha=0.4, c=2, n_layers=2)
    with torch.no_grad():
        for block in model.blocks:
            block.beta.uniform_(-1, 1)  # type: ignore[union-attr, operator]
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["model_type"] == "bsarec" and (saved["alpha"], saved["c"]) == (0.4, 2)
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is BSARec and loaded.config == model.config
    ids = _pad(_histories())
    assert torch.equal(loaded.score(ids), model.score(ids))


@pytest.mark.parametrize(("overrides", "named"), [({"alpha": 1.5}, "alpha"), ({"c": 8}, "c: must be between 1 and 7")])
def test_config_refuses_bad_values(overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        _model(**overrides)


def test_built_for_a_dataset_with_its_item_attributes(tiny_prepared: PreparedDataset) -> None:
    from llmrec.models.spec import sized
    from llmrec.training.fit import dataset_meta

    meta = dataset_meta(tiny_prepared, use_attributes=True)
    config = BSARecConfig(n_items=1, max_seq_len=8, d_model=16, n_layers=1, alpha=0.5)
    model = BSARec.build(sized(config, meta), meta)
    assert meta.attribute_vocab and model.config.n_attributes == len(meta.attribute_vocab) and model.config.alpha == 0.5
    assert meta.attributes is not None and model.n_items == tiny_prepared.n_items
    assert torch.equal(model.item_attributes, meta.attributes)


# ---- through the CLI and the service, unchanged ------------------------------------------------------------------
TINY = ["--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "model.d_ff=32", "--set", "model.max_seq_len=8"]


def _invoke(*args: str | Path) -> Result:
    from llmrec.cli import app

    return runner.invoke(app, [str(a) for a in args])


def _train(data: Path, out: Path, *args: str) -> Result:
    return _invoke("train", "--dataset", data, "--out", out, "--model", "bsarec", "--set", "train.epochs=2", *TINY, *args)


def test_cli_trains_bsarec_and_every_door_serves_it(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.recommend import Recommender
    from llmrec.serve import create_app

    data = tiny_prepared.save(tmp_path / "data")
    out = tmp_path / "bsa"
    trained = _train(data, out, "--set", "train.examples=prefixes", "--set", "model.alpha=0.5")
    assert trained.exit_code == 0, trained.output
    assert "trained bsarec" in trained.stdout and "valid ndcg@10" in trained.stdout
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["alpha"], config["c"], config["d_model"]) == ("bsarec", 0.5, 5, 16)
    assert json.loads((out / "training.json").read_text())["train"]["examples"] == "prefixes"

    report = tmp_path / "R.json"
    evaluated = _invoke("evaluate", "--model", out, "--out", report, "--n-boot", "20")
    assert evaluated.exit_code == 0, evaluated.output
    assert 0.0 <= json.loads(report.read_text())["test"]["ndcg@10"] <= 1.0

    user = tiny_prepared.users["user"][0]
    rec = Recommender.load(out)
    expected = [r.item_id for r in rec.recommend(user=user, k=3)]
    recommended = _invoke("recommend", "--model", out, "--user", user, "-k", "3", "--json")
    assert recommended.exit_code == 0, recommended.output
    assert [r["item_id"] for r in json.loads(recommended.stdout)] == expected

    for method in ("occlusion", "gradient"):
        explained = _invoke("explain", "--model", out, "--user", user, "-k", "2", "--json", "--method", method)
        assert explained.exit_code == 0, explained.output
        rows = json.loads(explained.stdout)
        assert [r["rank"] for r in rows] == [1, 2] and all(r["contributions"] for r in rows)

    from fastapi.testclient import TestClient

    with TestClient(create_app(rec)) as client:
        answer = client.post("/v1/recommend", json={"user_id": user, "k": 3, "explain": True})
        assert answer.status_code == 200, answer.text
        assert [i["item_id"] for i in answer.json()["items"]] == expected
        assert client.get("/v1/info").status_code == 200


def test_the_recipe_trains_on_prefixes_by_default_and_refuses_windows(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    data = tiny_prepared.save(tmp_path / "data")
    trained = _train(data, tmp_path / "default")  # no train.examples: the spec's own kind
    assert trained.exit_code == 0, trained.output
    assert json.loads((tmp_path / "default" / "training.json").read_text())["train"]["examples"] == "prefixes"
    refused = _train(data, tmp_path / "bsa", "--set", "train.examples=windows")
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.startswith("error: ") and "train.examples" in refused.stderr and "prefixes" in refused.stderr
    assert "Traceback" not in refused.output
    assert not (tmp_path / "bsa").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bsa")]
    unknown = _train(data, tmp_path / "bsa", "--set", "train.examples=prefixes", "--set", "model.gamma=1")
    assert unknown.exit_code == 2 and "model.gamma" in unknown.stderr
