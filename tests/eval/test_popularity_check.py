"""Every evaluation and every training summary compares the model with most-popular (llmrec.eval.popularity)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data import PreparedDataset
from llmrec.eval.popularity import (
    BelowPopularityWarning,
    compare_with_most_popular,
    popularity_markdown,
    popularity_warnings,
)

runner = CliRunner()
TINY = ["--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "model.d_ff=32", "--set", "model.max_seq_len=8"]


def _examples(n: int, n_items: int = 20) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """n histories of item 1 whose target is item 2, and popularity that puts item 2 at rank 1."""
    histories = [np.array([1], dtype=np.int64) for _ in range(n)]
    targets = np.full(n, 2, dtype=np.int64)
    popularity = np.zeros(n_items + 1, dtype=np.int64)
    popularity[2], popularity[3] = 100, 50
    return histories, targets, popularity


def test_a_model_ranking_below_most_popular_is_warned_in_words() -> None:
    histories, targets, popularity = _examples(60)
    ours = np.full(60, 15, dtype=np.int64)  # the model ranks the target 15th; most-popular ranks it 1st
    check = compare_with_most_popular({"test": ours}, {"test": (histories, targets)}, popularity, exclude_seen=True)
    c = check["test"]
    assert c["most_popular"] == pytest.approx(1.0) and c["model"] == pytest.approx(0.0)
    assert c["beats"] is False and c["p_value"] < 0.05
    (line,) = popularity_warnings(check)
    assert line.startswith("the model does not beat most-popular on test NDCG@10 (0.0000 vs 1.0000, p=")
    assert line.endswith("train longer or check the data")
    assert "| test | 0.0000 | 1.0000 |" in "\n".join(popularity_markdown(check))


def test_a_model_that_beats_it_with_significance_gets_no_warning() -> None:
    histories, targets, popularity = _examples(60)
    popularity[2] = 0  # most-popular now ranks the target last among the counted items
    check = compare_with_most_popular(
        {"valid": np.ones(60, dtype=np.int64)}, {"valid": (histories, targets)}, popularity, exclude_seen=False
    )
    assert check["valid"]["beats"] is True
    assert popularity_warnings(check) == []


def test_a_better_mean_without_significance_is_still_warned() -> None:
    histories, targets, popularity = _examples(4)
    popularity[2] = 0
    ours = np.array([1, 30, 30, 30], dtype=np.int64)  # one lucky user
    check = compare_with_most_popular({"test": ours}, {"test": (histories, targets)}, popularity, exclude_seen=False)
    assert check["test"]["p_value"] >= 0.05 and check["test"]["beats"] is False
    assert len(popularity_warnings(check)) == 1


@pytest.fixture
def trained(tmp_path: Path, tiny_prepared: PreparedDataset) -> tuple[Path, Path, str]:
    data, model = tmp_path / "data", tmp_path / "model"
    tiny_prepared.save(data)
    result = runner.invoke(
        app, ["train", "--dataset", str(data), "--out", str(model), "--threads", "1", *TINY, "--set", "train.epochs=1"]
    )
    assert result.exit_code == 0, result.output
    return data, model, result.output + result.stderr


def test_train_summary_compares_with_most_popular_on_valid(trained: tuple[Path, Path, str]) -> None:
    _, model, output = trained
    summary = json.loads((model / "training.json").read_text())
    check = summary["most_popular"]["valid"]
    assert set(check) >= {"model", "most_popular", "p_value", "beats", "ci"}
    assert f"vs most-popular (valid NDCG@10): {check['model']:.4f} vs {check['most_popular']:.4f}" in output
    assert summary["warnings"] == popularity_warnings(summary["most_popular"])
    for line in summary["warnings"]:
        assert f"warning: {line}" in output
    assert summary["threads"] == 1  # what was used, not the setting's 0


def test_evaluate_cli_report_and_python_api_carry_the_check(trained: tuple[Path, Path, str], tmp_path: Path) -> None:
    import llmrec

    data, model, _ = trained
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["evaluate", "--model", str(model), "--out", str(out), "--n-boot", "50"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["most_popular"]) == {"valid", "test"}
    test = report["most_popular"]["test"]
    assert f"vs most-popular (test NDCG@10): {test['model']:.4f} vs {test['most_popular']:.4f}" in result.output
    held_out = {s: c for s, c in report["most_popular"].items() if s != "valid" or report["protocol"]["valid_held_out"]}
    assert report["warnings"] == popularity_warnings(held_out)  # a refit model's valid row is not held out: no warning
    if not report["protocol"]["valid_held_out"]:
        assert not any(" valid " in line for line in report["warnings"])
    for line in report["warnings"]:
        assert f"warning: {line}" in result.stderr
    md = out.with_suffix(".md").read_text()
    assert "## Against most-popular" in md
    assert "test" in report and "most_popular" not in [k for k in report if k.startswith("most_popular_")]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = llmrec.evaluate(model, n_boot=50, device="cpu")
    assert again["most_popular"]["test"]["most_popular"] == pytest.approx(test["most_popular"])
    said = [str(w.message) for w in caught if issubclass(w.category, BelowPopularityWarning)]
    assert said == again["warnings"]


def test_most_popular_itself_is_not_checked_against_itself(tmp_path: Path, tiny_prepared: PreparedDataset) -> None:
    data, model = tmp_path / "data", tmp_path / "pop"
    tiny_prepared.save(data)
    assert runner.invoke(app, ["train", "--dataset", str(data), "--out", str(model), "--model", "most-popular"]).exit_code == 0
    result = runner.invoke(app, ["evaluate", "--model", str(model), "--n-boot", "20"])
    assert result.exit_code == 0, result.output
    assert "vs most-popular" not in result.output and "warning:" not in result.stderr
