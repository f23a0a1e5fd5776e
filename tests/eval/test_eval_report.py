"""Report building, rendering and writing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from llmrec.eval.evaluate import EvalResult, evaluate_split, sampled_metrics
from llmrec.eval.report import build_report, comparison_markdown, write_report


def _score_fn(histories: list[np.ndarray]) -> torch.Tensor:
    # Item i scores i, plus a bump on the user's last item, so ranks vary with the history.
    scores = torch.arange(11, dtype=torch.float32).repeat(len(histories), 1)
    for row, h in enumerate(histories):
        if h.size:
            scores[row, int(h[-1])] += 5.0
    return scores


def _results(exclude_seen: bool = False) -> dict[str, EvalResult]:
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("valid", 12), ("test", 12)):
        histories = [rng.integers(1, 11, size=int(rng.integers(0, 20))) for _ in range(n)]
        targets = rng.integers(1, 11, size=n)
        out[split] = evaluate_split(
            _score_fn,
            histories,
            targets,
            ks=(5, 10),
            exclude_seen=exclude_seen,
            target_popularity=rng.integers(0, 50, size=n),
            n_boot=100,
        )
    return out


def _report(model: str = "toy", exclude_seen: bool = False) -> dict[str, Any]:
    return build_report(
        _results(exclude_seen),
        model_name=model,
        dataset="tiny",
        protocol={"split": "leave-one-out"},
        extra={"seed": np.int64(3)},
    )


def test_build_report_top_level_shape() -> None:
    results = _results()
    report = build_report(results, model_name="toy", dataset="tiny", protocol={"split": "leave-one-out"})
    assert set(report) == {"valid", "test", "ci", "segments", "protocol", "model", "dataset", "n_users"}
    assert report["test"]["ndcg@10"] == pytest.approx(results["test"].metrics["ndcg@10"])
    assert report["ci"]["test"]["recall@10"] == list(results["test"].ci["recall@10"])
    assert report["protocol"] == {"split": "leave-one-out", "ranking": "full", "exclude_seen": False, "ks": [5, 10]}
    assert report["n_users"] == {"valid": 12, "test": 12}
    assert "pop low" in report["segments"]["test"]
    json.dumps(report, allow_nan=False)  # plain JSON: no numpy values, no NaN


def test_build_report_refuses_mixed_protocols() -> None:
    results = _results()
    with pytest.raises(ValueError, match="reserved"):
        build_report({"ci": results["test"]}, model_name="m", dataset="d", protocol={})
    with pytest.raises(ValueError, match="ranking"):
        build_report(results, model_name="m", dataset="d", protocol={"ranking": "sampled-100"})
    with pytest.raises(ValueError, match="exclude_seen"):
        build_report(
            {"valid": results["valid"], "test": _results(exclude_seen=True)["test"]},
            model_name="m",
            dataset="d",
            protocol={},
        )
    with pytest.raises(ValueError, match="sampled-"):
        build_report(results, model_name="m", dataset="d", protocol={}, sampled={"test": {"recall@10": 0.5}})


def test_build_report_keeps_sampled_metrics_apart() -> None:
    sampled = {"test": sampled_metrics(np.array([1, 3]), n_negatives=100, ks=(10,))}
    report = build_report(_results(), model_name="m", dataset="d", protocol={}, sampled=sampled)
    assert report["sampled"]["test"]["sampled-100/recall@10"] == 1.0
    assert not any(key.startswith("sampled") for key in report["test"])


def test_write_report_creates_json_md_png(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("epoch,train_loss,valid_ndcg@10\n1,5.0,0.01\n2,4.0,\n3,3.5,0.03\n")
    report = _report()
    paths = write_report(report, tmp_path / "out" / "eval.json", training_log_csv=log)
    assert [p.name for p in paths] == ["eval.json", "eval.md", "eval.png"]
    assert json.loads(paths[0].read_text()) == report
    md = paths[1].read_text()
    assert "## test" in md and "### Segments (test)" in md and "histlen 1-3" in md
    assert "Ranking is **full**" in md and "**not excluded**" in md
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["eval.json", "eval.md", "eval.png"]  # no temp files


def test_write_report_without_training_log_and_bad_log(tmp_path: Path) -> None:
    paths = write_report(_report(exclude_seen=True), tmp_path / "r.json")
    assert all(p.exists() for p in paths)
    assert "**excluded**" in paths[1].read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,loss\n1,2.0\n")
    with pytest.raises(ValueError, match="train_loss"):
        write_report(_report(), tmp_path / "s.json", training_log_csv=bad)
    assert not (tmp_path / "s.json").exists()  # nothing written when rendering fails


def test_comparison_markdown_side_by_side() -> None:
    a = _report("a")
    b = json.loads(json.dumps(a))
    b["model"] = "b"
    b["test"]["ndcg@10"] = 0.99
    table = comparison_markdown({"a": a, "b": b}, metrics=("recall@10", "ndcg@10", "mrr"))
    lines = table.splitlines()
    assert lines[0] == "| model | recall@10 | ndcg@10 | mrr | users |"
    assert lines[3].startswith("| b |") and "**0.9900**" in lines[3]
    assert "full ranking over all items" in table
    b["dataset"] = "other"
    assert "**Warning:**" in comparison_markdown({"a": a, "b": b})


def test_markdown_flags_valid_numbers_of_a_refit_model(tmp_path: Path) -> None:
    from llmrec.eval.evaluate import evaluate_split
    from llmrec.eval.report import build_report, write_report

    def score_fn(histories: list[np.ndarray]) -> torch.Tensor:
        s = torch.arange(6, dtype=torch.float32).repeat(len(histories), 1)
        s[:, 0] = float("-inf")
        return s

    res = evaluate_split(score_fn, [np.array([1]), np.array([2])], np.array([5, 3]), ks=(1,), n_boot=0)
    protocol = {"valid_held_out": False, "selection_valid": {"ndcg@10": 0.0498}}
    report = build_report({"valid": res, "test": res}, model_name="m", dataset="d", protocol=protocol)
    paths = write_report(report, tmp_path / "r.json")
    text = paths[1].read_text()
    assert "not held out" in text and "0.0498" in text
    plain = build_report({"valid": res}, model_name="m", dataset="d", protocol={})
    assert "not held out" not in write_report(plain, tmp_path / "p.json")[1].read_text()
