"""`llmrec.experiment.evaluate_model`: one report with both seen-item protocols, the refit record and the dataset name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from llmrec.artifact import write_manifest
from llmrec.data import PrepareConfig, PreparedDataset, RawData, prepare
from llmrec.eval.evaluate import repeat_targets
from llmrec.eval.report import write_report
from llmrec.experiment import check_settings, evaluate_model, train_model

TINY_LM = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "max_seq_len": 8}
REPEATERS = ("u01", "u02", "u03")


@pytest.fixture
def with_repeats(tiny_raw: RawData) -> PreparedDataset:
    """tiny_raw where u01-u03 consume their first item again at the very end: 3 repeated test targets."""
    events = tiny_raw.events
    again = (
        events.filter(pl.col("user").is_in(REPEATERS))
        .sort("time")
        .group_by("user", maintain_order=True)
        .agg(pl.col("item").first(), pl.col("time").max() + 10, pl.col("value").first())
    )
    raw = RawData(
        events=pl.concat([events, again.select(events.columns)]),
        items=tiny_raw.items,
        users=None,
        domain="generic",
        source_files=[],
    )
    return prepare(raw, PrepareConfig(split="loo"), name="my-shop")


def _train(dataset: PreparedDataset, tmp_path: Path, model: str, **train: Any) -> Path:
    data_dir = dataset.save(tmp_path / "data")
    out = tmp_path / model
    sections = {"model": dict(TINY_LM), "train": {"epochs": 1, "progress": False, **train}} if model == "next-item-lm" else {}
    train_model(dataset, data_dir, check_settings(model, sections, progress=False), out)
    return out


def test_one_run_reports_both_protocols_and_counts_repeat_targets(with_repeats: PreparedDataset, tmp_path: Path) -> None:
    model = _train(with_repeats, tmp_path, "most-popular")
    report = evaluate_model(model, with_repeats, n_boot=20, exclude_seen=False)
    for split in ("valid", "test"):
        assert report[split] == report[f"{split}_include_seen"]  # as asked (default: the model's served rule)
        assert f"{split}_exclude_seen" in report and f"{split}_exclude_seen" in report["ci"]
    ex = with_repeats.eval_examples("test")
    assert int(repeat_targets(ex.histories, ex.targets).sum()) == 3
    assert report["repeat_targets"] == {"valid": 0, "test": 3}

    asked = evaluate_model(model, with_repeats, exclude_seen=True, n_boot=20)
    assert asked["protocol"]["exclude_seen"] is True
    for split in ("valid", "test"):
        assert asked[split] == asked[f"{split}_exclude_seen"] == report[f"{split}_exclude_seen"]
        assert asked[f"{split}_include_seen"] == report[split]
    # most-popular ranks by training counts: each repeater's target is its first item, so without the mask it sits
    # where its popularity puts it; with the mask it is a miss at every k below n_items.
    n_users = report["n_users"]["test"]
    assert asked["test"]["recall@20"] <= (n_users - 3) / n_users + 1e-12


def test_the_report_states_whether_the_valid_item_was_trained_on(with_repeats: PreparedDataset, tmp_path: Path) -> None:
    refit = _train(with_repeats, tmp_path / "a", "next-item-lm")  # refit_on_valid is the default
    strict = _train(with_repeats, tmp_path / "b", "next-item-lm", refit_on_valid=False)
    popular = _train(with_repeats, tmp_path / "c", "most-popular")
    assert evaluate_model(refit, with_repeats, n_boot=0)["protocol"]["refit_on_valid"] is True
    assert evaluate_model(strict, with_repeats, n_boot=0)["protocol"]["refit_on_valid"] is False
    assert evaluate_model(popular, with_repeats, n_boot=0)["protocol"]["refit_on_valid"] is False  # fit on train only

    (popular / "training.json").unlink()  # e.g. an artifact exported without its training record
    write_manifest(popular)
    report = evaluate_model(popular, with_repeats, n_boot=0)
    assert report["protocol"]["refit_on_valid"] is None
    md = write_report(report, tmp_path / "r.json")[1].read_text()
    assert "| validation item a training target | not recorded" in md


def test_reports_are_titled_with_the_dataset_name(with_repeats: PreparedDataset, tmp_path: Path) -> None:
    model = _train(with_repeats, tmp_path, "most-popular")
    report = evaluate_model(model, with_repeats, n_boot=0)
    assert report["dataset"] == "my-shop"
    paths = write_report(report, tmp_path / "r.json")
    assert paths[1].read_text().startswith("# most-popular on my-shop\n")
    assert json.loads(paths[0].read_text())["dataset"] == "my-shop"

    older = PreparedDataset(
        sequences=with_repeats.sequences,
        times=with_repeats.times,
        users=with_repeats.users,
        items=with_repeats.items,
        manifest={k: v for k, v in with_repeats.manifest.items() if k != "name"},
    )
    assert evaluate_model(model, older, n_boot=0)["dataset"] == model.name  # no name recorded: the folder's
    older.manifest["source"] = {"dataset": "ml-100k"}
    assert evaluate_model(model, older, n_boot=0)["dataset"] == "ml-100k"


def test_the_paired_baseline_test_is_a_markdown_table(with_repeats: PreparedDataset, tmp_path: Path) -> None:
    lm = _train(with_repeats, tmp_path / "a", "next-item-lm")
    popular = _train(with_repeats, tmp_path / "b", "most-popular")
    report = evaluate_model(lm, with_repeats, n_boot=20, baseline_dir=popular)
    md = write_report(report, tmp_path / "r.json")[1].read_text()
    section = md.split("## Paired test against a baseline", 1)[1].split("\n## ", 1)[0]  # up to the next section
    rows = [line for line in section.splitlines() if line.startswith(("| test |", "| valid |"))]
    assert len(rows) == 4  # valid and test x ndcg@10 and recall@10
    ours = report["test"]["ndcg@10"]
    assert any(r.startswith(f"| test | ndcg@10 | {ours:.4f} |") for r in rows)


def test_evaluate_command_prints_the_other_protocol_and_the_repeats(with_repeats: PreparedDataset, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from llmrec.cli import app

    model = _train(with_repeats, tmp_path, "most-popular")
    out = tmp_path / "R.json"
    args = ["evaluate", "--model", str(model), "--out", str(out), "--n-boot", "20", "--include-seen"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    line = " ".join(result.stdout.split())
    assert f"with seen items excluded: test NDCG@10 {report['test_exclude_seen']['ndcg@10']:.4f}" in line
    assert "repeat test targets (already in the history): 3" in line
    assert "trained on training events only" in line
