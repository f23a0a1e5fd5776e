"""TV-Rec: the time-variant filter (its formula, causality, padding), the orthogonality penalty, overfitting,
persistence, capabilities, and training -> evaluate / recommend / explain / serve through the public doors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner, Result

from llmrec.data import PreparedDataset
from llmrec.models.tvrec import TVRec, TVRecConfig
from llmrec.types import PAD_ID, SeqBatch

N_ITEMS = 40
runner = CliRunner()


def _model(seed: int = 0, **overrides: Any) -> TVRec:
    base: dict[str, Any] = dict(n_items=N_ITEMS, max_seq_len=10, d_model=16, n_layers=2, d_ff=32, dropout=0.0, emb_dropout=0.0)
    torch.manual_seed(seed)
    model = TVRec(TVRecConfig(**{**base, **overrides})).eval()
    with torch.no_grad():  # taps large enough that the filter matters (they start near 1e-3)
        for block in model.blocks:
            block.coef.normal_(0.0, 1.0)
    return model


def _pad(histories: list[list[int]], length: int | None = None) -> torch.Tensor:
    L = length or max(len(h) for h in histories)
    out = torch.full((len(histories), L), PAD_ID, dtype=torch.long)
    for i, h in enumerate(histories):
        out[i, L - len(h) :] = torch.tensor(h)
    return out


def test_the_filter_is_a_time_variant_causal_convolution() -> None:
    block = _model().blocks[0]
    h = block.kernels().detach()  # [N slots, N taps]
    N, L = 10, 6
    x = torch.randn(1, L, 3)
    y = torch.matmul(block.mixing(L), x)[0]
    for t in range(L):  # the history's position t sits in slot N - L + t
        s = N - L + t
        expected = sum(h[s, k] * x[0, t - k] for k in range(t + 1))
        assert torch.allclose(y[t], expected, atol=1e-6)


def test_the_taps_are_a_low_rank_mix_of_unit_basis_kernels() -> None:
    block = _model(n_basis=3).blocks[0]
    b = torch.view_as_complex(block.basis.detach())
    unit = b / b.abs().pow(2).sum(1, keepdim=True).sqrt()
    assert torch.allclose(block.kernels().detach(), block.coef.detach() @ unit.real, atol=1e-6)
    assert torch.linalg.matrix_rank(block.kernels().detach()) <= 3


def test_each_position_reads_only_the_items_before_it() -> None:
    model = _model()
    ids = _pad([[3, 7, 1, 9, 4, 2, 8]])
    changed = ids.clone()
    changed[0, 4:] = torch.tensor([11, 12, 13])
    a, b = model.encode(ids), model.encode(changed)
    assert torch.allclose(a[0, :4], b[0, :4], atol=1e-6)
    assert not torch.allclose(a[0, 4], b[0, 4])


def test_a_history_scores_the_same_whatever_the_padding_of_its_batch() -> None:
    model = _model()
    alone = model.score(_pad([[5, 6, 7]]))
    in_batch = model.score(_pad([[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8]]))
    wider = model.score(_pad([[5, 6, 7]], length=10))
    assert torch.allclose(alone[0], in_batch[0], atol=1e-5) and torch.allclose(alone[0], wider[0], atol=1e-5)
    assert alone[0, PAD_ID] == float("-inf")


def test_the_newest_slot_depends_on_the_order() -> None:
    model = _model()
    scores = model.score(_pad([[1, 2, 3, 4], [4, 3, 2, 1]]))
    assert not torch.allclose(scores[0], scores[1])


def test_orthogonality_penalty_is_zero_for_an_orthogonal_basis_and_enters_the_loss() -> None:
    model = _model(n_basis=2, ortho_weight=0.5)
    block = model.blocks[0]
    with torch.no_grad():
        block.basis.zero_()
        block.basis[0, 0, 0] = block.basis[1, 1, 0] = 2.0  # real parts e0, e1
        block.basis[0, 2, 1] = block.basis[1, 3, 1] = 1.0  # imaginary parts e2, e3
    assert block.ortho_penalty().item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        block.basis[1, 0, 0] = 2.0  # the real parts now overlap
    assert block.ortho_penalty().item() > 0.1

    batch = SeqBatch(item_ids=_pad([[1, 2, 3], [4, 5, 6]]), targets=_pad([[0, 0, 4], [0, 0, 7]]))
    plain = _model(n_basis=2)
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        penalty = sum(b.ortho_penalty().item() for b in model.blocks)
    loss_with, loss_without = model(batch).loss, plain(batch).loss
    assert loss_with is not None and loss_without is not None
    assert loss_with.item() == pytest.approx(loss_without.item() + 0.5 * penalty, rel=1e-5)


def test_only_the_last_target_of_a_row_is_trained() -> None:
    model = _model()
    ids = _pad([[1, 2, 3, 4]])
    last_only = model(SeqBatch(item_ids=ids, targets=_pad([[0, 0, 0, 9]]))).loss
    every = model(SeqBatch(item_ids=ids, targets=_pad([[2, 3, 4, 9]]))).loss
    assert last_only is not None and every is not None and torch.equal(last_only, every)


def test_overfits_one_batch_and_loads_back_identically(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _model().train()
    seqs = [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15], [3, 1, 4, 1, 5]]
    batch = SeqBatch(item_ids=_pad([s[:-1] for s in seqs]), targets=_pad([[0, 0, 0, s[-1]] for s in seqs]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = model(batch).loss
        assert loss is not None
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    model.eval()
    model.save_pretrained(tmp_path / "m")
    loaded = TVRec.from_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "tvrec"
    assert torch.equal(model.score(batch.item_ids), loaded.score(batch.item_ids))
    assert loaded.score(batch.item_ids).argmax(1).tolist() == [s[-1] for s in seqs]


def test_settings_are_checked_by_name() -> None:
    with pytest.raises(ValueError, match="n_basis"):
        TVRecConfig(n_items=5, n_basis=0)
    with pytest.raises(ValueError, match="ortho_weight"):
        TVRecConfig(n_items=5, ortho_weight=-1.0)


def test_the_spec_gives_every_capability() -> None:
    from llmrec.models import model_spec

    spec = model_spec("tvrec")
    assert spec.model_class is TVRec and spec.examples == ("prefixes",)
    assert set(spec.capabilities()) >= {
        "Trainable",
        "ItemEmbeddingModel",
        "Adaptable",
        "ColdItemMappable",
        "GradientAttributable",
        "OnnxExportable",
    }


# ---- through the public doors, with nothing but its file and registry line ---------------------------------------
TINY = ["--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "model.d_ff=32", "--set", "model.max_seq_len=8"]


def _invoke(*args: str | Path) -> Result:
    from llmrec.cli import app

    return runner.invoke(app, [str(a) for a in args])


def test_cli_trains_tvrec_and_every_door_serves_it(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from llmrec.recommend import Recommender
    from llmrec.serve import create_app

    data = tiny_prepared.save(tmp_path / "data")
    out = tmp_path / "tv"
    trained = _invoke(
        "train", "--dataset", data, "--out", out, "--model", "tvrec", "--set", "train.epochs=2", *TINY,
        "--set", "train.examples=prefixes", "--set", "model.n_basis=4",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert "trained tvrec" in trained.stdout
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["n_basis"], config["pos_encoding"]) == ("tvrec", 4, "none")
    recorded = json.loads((out / "training.json").read_text())["train"]  # its recipe under the user's --set
    assert (recorded["epochs"], recorded["batch_size"], recorded["adam_beta2"], recorded["grad_clip"]) == (2, 256, 0.999, 0)

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
    explained = _invoke("explain", "--model", out, "--user", user, "-k", "2", "--json", "--method", "gradient")
    assert explained.exit_code == 0, explained.output
    assert all(r["contributions"] for r in json.loads(explained.stdout))
    with TestClient(create_app(rec)) as client:
        answer = client.post("/v1/recommend", json={"user_id": user, "k": 3})
        assert answer.status_code == 200, answer.text
        assert [i["item_id"] for i in answer.json()["items"]] == expected

    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    exported = _invoke("export", "--model", out, "--out", tmp_path / "deploy", "--onnx")
    assert exported.exit_code == 0, exported.output
    session = ort.InferenceSession(str(tmp_path / "deploy" / "scorer.onnx"), providers=["CPUExecutionProvider"])
    ids = np.zeros((2, 8), dtype=np.int64)
    ids[0, -3:] = [1, 2, 3]
    ids[1, -1] = 4
    want = rec.model.score(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(session.run(None, {"item_ids": ids})[0][:, 1:], want[:, 1:], atol=1e-4)
