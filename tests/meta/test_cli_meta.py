"""`llmrec meta-train`, `llmrec evaluate --protocol cold-start` and `Recommender.recommend(adapt=True)` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data import PreparedDataset
from llmrec.data.sequences import pad_left
from llmrec.meta.maml import UserAdapter, adapted_scores
from llmrec.models import NextItemLM
from llmrec.recommend import Recommender

runner = CliRunner()
QUICK = ["--set", "meta.meta_steps=4", "--set", "meta.eval_every=2", "--set", "meta.meta_batch_size=4", "--threads", "1"]


def _meta_train(tiny_base: Path, out: Path, method: str, *extra: str) -> dict[str, object]:
    data = json.loads((tiny_base / "dataset.json").read_text())["prepared_path"]
    args = ["meta-train", "--dataset", data, "--base", str(tiny_base), "--out", str(out), "--method", method, *QUICK, *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"→ {out}" in result.stdout
    return json.loads((out / "meta.json").read_text())  # type: ignore[no-any-return]


def test_meta_train_writes_an_artifact_that_adapts(tiny_base: Path, tiny_cold: PreparedDataset, tmp_path: Path) -> None:
    out = tmp_path / "maml"
    summary = _meta_train(tiny_base, out, "maml")
    assert summary["method"] == "maml" and {"valid", "valid_zero_shot", "warm_valid", "warm_valid_base"} <= set(summary)
    assert summary["warm_valid"] == summary["warm_valid_base"]  # the LM is untouched: warm users score the same
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "adapter.json",
        "adapter.safetensors",
        "items.parquet",
    }
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    # The LM is the base's, unchanged; the adapter loads back to the same scores.
    base, model = NextItemLM.from_pretrained(tiny_base), NextItemLM.from_pretrained(out)
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), model.state_dict().values(), strict=True))

    rec = Recommender.load(out)
    assert rec.adapter is not None
    _, cold = tiny_cold.cold_users("cold_test")
    raw = tiny_cold.raw_item_ids()
    history = [raw[i - 1] for i in cold[0][:3]]
    adapted = rec.recommend(history=history, k=5, adapt=True, exclude_seen=False)  # compared with a plain top-k
    direct = adapted_scores(model, UserAdapter.from_pretrained(out), pad_left([cold[0][:3]], 8))[0].topk(5)
    assert [r.item_id for r in adapted] == [raw[j - 1] for j in direct.indices.tolist()]
    torch.testing.assert_close(torch.tensor([r.score for r in adapted]), direct.values)
    assert rec.recommend(history=history, k=5) != adapted  # adapt=False: the base LM's ranking

    with pytest.raises(ValueError, match="needs a meta-trained artifact"):
        Recommender.load(tiny_base).recommend(history=history, adapt=True)


def test_meta_train_in_context_changes_the_lm(tiny_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "ic"
    summary = _meta_train(
        tiny_base,
        out,
        "in-context",
        "--set",
        "train.epochs=1",
        "--set",
        "episodic.max_support=3",
        "--set",
        "episodic.warm_tolerance=-1",
    )
    assert summary["in_context"]["best_epoch"] == 1  # type: ignore[index]
    assert not (out / "adapter.json").exists()
    base, model = NextItemLM.from_pretrained(tiny_base), NextItemLM.from_pretrained(out)
    assert not torch.equal(base.item_emb.weight, model.item_emb.weight)


def test_meta_train_refuses_bad_input(tiny_base: Path, tmp_path: Path) -> None:
    data = json.loads((tiny_base / "dataset.json").read_text())["prepared_path"]
    base_args = ["meta-train", "--dataset", data, "--base", str(tiny_base), "--out", str(tmp_path / "x")]
    for extra, fragment in [
        (["--method", "magic"], "unknown method 'magic'"),
        (["--set", "meta.colour=1"], "meta.colour"),
        (["--set", "nope.x=1"], "unknown config section(s): nope"),
    ]:
        result = runner.invoke(app, [*base_args, *extra])
        assert result.exit_code == 2 and fragment in result.stderr, result.output


def test_evaluate_cold_start_protocol(tiny_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "maml"
    _meta_train(tiny_base, out, "finetune")
    report = tmp_path / "cold.json"
    result = runner.invoke(
        app, ["evaluate", "--model", str(out), "--protocol", "cold-start", "--n-boot", "50", "--out", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert "cold-start users (3)" in result.stdout and "seen items excluded" in result.stdout
    got = json.loads(report.read_text())
    assert set(got) == {"protocol", "model", "zero-shot", "adapted"}
    assert got["adapted"]["support_sizes"] == [1, 2, 3, 5] and set(got["adapted"]["ci"]["1"]) >= {"ndcg@10", "recall@10"}
    assert report.with_suffix(".md").read_text().startswith("| method |")

    base = runner.invoke(
        app, ["evaluate", "--model", str(tiny_base), "--protocol", "cold-start", "--n-boot", "0", "--no-exclude-seen"]
    )
    assert base.exit_code == 0, base.output
    assert "adapted" not in base.stdout and "seen items not excluded" in base.stdout
    bad = runner.invoke(app, ["evaluate", "--model", str(tiny_base), "--protocol", "cold"])
    assert bad.exit_code == 2 and "--protocol must be loo or cold-start" in bad.stderr
