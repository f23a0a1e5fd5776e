"""Report building, rendering and writing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from llmrec.eval.evaluate import EvalResult, evaluate_split, evaluate_split_both, sampled_metrics
from llmrec.eval.report import _figure, build_report, comparison_markdown, write_report


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
    assert set(report) == {
        "valid",
        "test",
        "valid_include_seen",  # the split as asked, under its protocol's own key as well
        "test_include_seen",
        "ci",
        "segments",
        "protocol",
        "model",
        "dataset",
        "n_users",
        "repeat_targets",
    }
    assert report["test_include_seen"] == report["test"]
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


def test_a_training_log_without_validation_draws_the_loss_alone(tmp_path: Path) -> None:
    """A fixed-length run (train.selected_epoch) validates nothing: its log has no valid column, and that is fine."""
    from llmrec.eval.plots import read_training_log

    log = tmp_path / "fixed.csv"
    log.write_text("epoch,train_loss,lr\n1,5.0,0.001\n2,4.5,0.001\n")
    columns = read_training_log(log)
    assert columns["train_loss"] == [5.0, 4.5] and all(np.isnan(columns["valid_ndcg@10"]))
    paths = write_report(_report(), tmp_path / "r.json", training_log_csv=log)
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


# Item i scores i (10 best); column 0 is padding. Hand-worked ranks with n_items = 10:
#   history [10, 2], target 10 (a repeat): not excluded rank 1; excluded -> masked, rank 10 (a miss)
#   history [9],     target 8:             not excluded rank 3; excluded (9 removed) rank 2
#   history [],      target 10:            rank 1 either way
_HIST = [np.array([10, 2]), np.array([9]), np.array([], dtype=np.int64)]
_TGT = np.array([10, 8, 10])


def _linear(histories: list[np.ndarray]) -> torch.Tensor:
    return torch.arange(11, dtype=torch.float32).repeat(len(histories), 1)


def _both_report(**protocol: Any) -> dict[str, Any]:
    both = {split: evaluate_split_both(_linear, _HIST, _TGT, ks=(1, 10), n_boot=20) for split in ("valid", "test")}
    return build_report(
        {split: b["exclude_seen"] for split, b in both.items()},
        model_name="lm",
        dataset="my-shop",
        protocol=protocol,
        other_protocol={split: b["include_seen"] for split, b in both.items()},
    )


def test_build_report_holds_both_seen_item_protocols_and_repeat_counts() -> None:
    report = _both_report(refit_on_valid=False)
    assert report["test"] == report["test_exclude_seen"]
    assert report["test_exclude_seen"]["recall@1"] == pytest.approx(1 / 3)  # ranks 10, 2, 1
    assert report["test_include_seen"]["recall@1"] == pytest.approx(2 / 3)  # ranks 1, 3, 1
    assert report["test_exclude_seen"]["recall@10"] == pytest.approx(1.0)  # rank 10 of 10 is still inside k = n_items
    assert report["repeat_targets"] == {"valid": 1, "test": 1}
    assert set(report["ci"]) == {
        "valid",
        "test",
        "valid_exclude_seen",
        "valid_include_seen",
        "test_exclude_seen",
        "test_include_seen",
    }
    assert report["protocol"]["exclude_seen"] is True and report["dataset"] == "my-shop"
    same = evaluate_split_both(_linear, _HIST, _TGT, ks=(1,), n_boot=0)
    with pytest.raises(ValueError, match="other seen-item protocol"):
        build_report(
            {"test": same["exclude_seen"]},
            model_name="m",
            dataset="d",
            protocol={},
            other_protocol={"test": same["exclude_seen"]},
        )
    with pytest.raises(ValueError, match="protocol suffix"):
        build_report({"test_exclude_seen": same["exclude_seen"]}, model_name="m", dataset="d", protocol={})


def test_markdown_states_both_protocols_refit_and_repeats(tmp_path: Path) -> None:
    md = write_report(_both_report(refit_on_valid=False), tmp_path / "r.json")[1].read_text()
    assert md.startswith("# lm on my-shop\n")
    assert "| seen items (tables below) | **excluded**" in md and "counts as a miss" in md
    assert "| validation item a training target | **no**: trained on training events only" in md
    assert "| repeat targets (already in the history) | valid 1 of 3, test 1 of 3 |" in md
    table = md.split("## Both seen-item protocols", 1)[1]
    assert "| test | excluded | 1.0000 | " in table and "| test | not excluded | 1.0000 | " in table
    assert "## test (3 users, seen items excluded)" in md
    refit = write_report(_both_report(refit_on_valid=True, selection_valid={"ndcg@10": 0.0725}), tmp_path / "f.json")[1]
    assert "| validation item a training target | **yes**" in refit.read_text() and "0.0725" in refit.read_text()
    unknown = write_report(_both_report(refit_on_valid=None), tmp_path / "u.json")[1].read_text()
    assert "| validation item a training target | not recorded" in unknown


def test_markdown_renders_the_paired_test_as_a_table(tmp_path: Path) -> None:
    t = {"mean_a": 0.3, "mean_b": 0.2, "mean_diff": 0.1, "ci_lo": 0.05, "ci_hi": 0.15, "p_value": 0.001, "n": 3.0}
    report = dict(_report())
    report["extra"] = {"paired": {"baseline": "models/pop", "test": {"ndcg@10": t}}, "seed": 3}
    md = write_report(report, tmp_path / "r.json")[1].read_text()
    assert "| split | metric | this model | baseline | difference (95% CI) | p-value | users |" in md
    assert "| test | ndcg@10 | 0.3000 | 0.2000 | +0.1000 [+0.0500, +0.1500] | 0.0010 | 3 |" in md
    assert '"paired"' not in md and '"seed": 3' in md  # other extras stay as JSON


def test_png_titles_never_overlap_the_panels(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("epoch,train_loss,valid_ndcg@10\n1,5.0,0.01\n2,4.0,0.02\n")
    report = dict(_report())
    report["dataset"] = "a-long-catalogue-name-from-my-own-events-file-with-many-words"
    fig = _figure(report, log)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle
    assert title is not None and "toy on a-long-catalogue-name" in title.get_text()
    boxes = [title.get_window_extent(renderer)]
    for ax in fig.axes:
        if ax.get_title():
            boxes.append(ax.title.get_window_extent(renderer))
    frame = fig.bbox
    for i, box in enumerate(boxes):
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1 + 1
        for other in boxes[i + 1 :]:
            assert not box.overlaps(other)
    # the figure title sits above every panel
    assert all(title.get_window_extent(renderer).y0 >= ax.get_window_extent(renderer).y1 for ax in fig.axes)
