"""One seen-item rule per model: chosen on validation at training time, recorded, and used by default everywhere."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data import PreparedDataset
from llmrec.data.dataset import EvalExamples
from llmrec.eval.seen_rule import choose_seen_rule
from llmrec.recommend import Recommender

runner = CliRunner()


def write_rule(artifact: Path, rule: str | None) -> None:
    """Record a seen-item rule in the artifact's training.json (None: no record, as an older artifact)."""
    record: dict[str, Any] = {"model": "next-item-lm"}
    if rule is not None:
        record["seen_items"] = {"rule": rule, "valid_ndcg@10": {"exclude_seen": 0.1, "include_seen": 0.2}}
    (artifact / "training.json").write_text(json.dumps(record))


def _history_first(n_items: int) -> Any:
    """A score function that ranks the history's items first, most recent highest, then the rest by id."""

    def scores(histories: list[np.ndarray]) -> torch.Tensor:
        out = -torch.arange(n_items + 1, dtype=torch.float32).repeat(len(histories), 1) / 1000  # [B, V+1]
        for i, h in enumerate(histories):
            out[i, torch.from_numpy(h)] = 1.0 + torch.arange(len(h), dtype=torch.float32)
        out[:, 0] = float("-inf")
        return out

    return scores


def _valid(histories: list[list[int]], targets: list[int]) -> Any:
    ex = EvalExamples(user_idx=np.arange(len(targets)), histories=[np.array(h) for h in histories], targets=np.array(targets))
    return SimpleNamespace(eval_examples=lambda split: ex)


def test_history_is_kept_only_when_validation_says_so_clearly() -> None:
    rng = np.random.default_rng(0)
    histories = [list(rng.choice(np.arange(1, 50), 5, replace=False)) for _ in range(200)]
    repeats = _valid(histories, [int(h[-1]) for h in histories])  # every target is the last item again
    fresh = _valid(histories, [int(rng.choice(np.setdiff1d(np.arange(1, 50), h))) for h in histories])
    chosen = choose_seen_rule(_history_first(49), repeats)
    assert chosen is not None and chosen["rule"] == "include"
    assert chosen["valid_ndcg@10"]["include_seen"] > chosen["valid_ndcg@10"]["exclude_seen"] * 1.02
    assert chosen["p_value"] < 0.05
    kept_out = choose_seen_rule(_history_first(49), fresh)
    assert kept_out is not None and kept_out["rule"] == "exclude"


def test_training_records_the_rule_and_everything_serves_it(shop_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.experiment import check_settings, train_model

    data = shop_prepared.save(tmp_path / "data")
    summary = train_model(shop_prepared, data, check_settings("most-popular", {}), tmp_path / "pop")
    record = json.loads((tmp_path / "pop" / "training.json").read_text())["seen_items"]
    assert record == summary["seen_items"] and record["rule"] in ("include", "exclude")
    assert set(record["valid_ndcg@10"]) == {"exclude_seen", "include_seen"}


def test_recommend_uses_the_recorded_rule_and_flags_override_it(shop_artifact: Path) -> None:
    write_rule(shop_artifact, "include")
    rec = Recommender.load(shop_artifact)
    user = next(u for u, h in rec.histories.items() if len(h) >= 5)
    assert rec.exclude_seen_default is False
    assert rec.recommend(user=user, k=50) == rec.recommend(user=user, k=50, exclude_seen=False)
    assert any(r.item_id in {rec.raw_ids[i - 1] for i in rec.histories[user]} for r in rec.recommend(user=user, k=50))

    def cli(*flags: str) -> list[str]:
        out = runner.invoke(app, ["recommend", "--model", str(shop_artifact), "--user", user, "-k", "50", "--json", *flags])
        assert out.exit_code == 0, out.output
        return [r["item_id"] for r in json.loads(out.stdout)]

    assert cli() == cli("--include-seen") != cli("--exclude-seen")
    write_rule(shop_artifact, None)  # an artifact from before the rule: history left out, as before
    old = Recommender.load(shop_artifact)
    assert old.exclude_seen_default is True
    assert old.recommend(user=user, k=50) == old.recommend(user=user, k=50, exclude_seen=True)


def test_evaluate_headline_is_the_served_rule_with_example_users(
    shop_artifact: Path, shop_prepared: PreparedDataset, tmp_path: Path
) -> None:
    from llmrec.eval.leave_one_out import evaluate_model, write_evaluation

    write_rule(shop_artifact, "include")
    report = evaluate_model(shop_artifact, shop_prepared, n_boot=20, device="cpu")
    assert report["protocol"]["exclude_seen"] is False and report["protocol"]["served_exclude_seen"] is False
    assert report["test"] == report["test_include_seen"] and "test_exclude_seen" in report
    assert report["protocol"]["seen_rule"]["rule"] == "include"
    asked = evaluate_model(shop_artifact, shop_prepared, n_boot=20, device="cpu", exclude_seen=True)
    assert asked["test"] == asked["test_exclude_seen"] and asked["protocol"]["served_exclude_seen"] is False

    examples = report["examples"]
    assert 1 <= len(examples) <= 3
    for ex in examples:
        assert len(ex["top"]) == 10 and all(i["title"].startswith("Item ") for i in ex["top"])
        assert ex["history"] and ex["target"]["title"]
    write_evaluation(report, tmp_path / "r.json", shop_artifact)
    md = (tmp_path / "r.md").read_text()
    assert "## Served ranking" in md and "**keep history items**" in md
    assert "## Example users" in md and f"### user {examples[0]['user']}" in md
    assert json.loads((tmp_path / "r.json").read_text())["examples"] == examples
