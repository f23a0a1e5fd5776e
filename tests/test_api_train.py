"""`llmrec.train` / `llmrec.evaluate`: the CLI's defaults and results from one Python call each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import llmrec
from llmrec.api import split_overrides
from llmrec.cli import app
from llmrec.data import PreparedDataset
from llmrec.experiment import evaluate_model
from llmrec.recommend import Recommender

TINY = {"d_model": 16, "n_layers": 1, "d_ff": 32, "max_seq_len": 8}


@pytest.fixture
def data(tiny_prepared: PreparedDataset, tmp_path: Path) -> Path:
    return tiny_prepared.save(tmp_path / "data")


def test_overrides_go_to_their_section() -> None:
    sections = split_overrides({"epochs": 3, "lr": 1e-3, "d_model": 32, "train__patience": 2, "model__loss": "bce"})
    assert sections == {"train": {"epochs": 3, "lr": 1e-3, "patience": 2}, "model": {"d_model": 32, "loss": "bce"}}
    with pytest.raises(ValueError, match="section__key=value"):
        split_overrides({"__lr": 1.0})


def test_train_matches_the_cli_and_keeps_its_defaults(data: Path, tmp_path: Path) -> None:
    cli = CliRunner().invoke(
        app,
        ["train", "--dataset", str(data), "--out", str(tmp_path / "cli"), "--set", "train.epochs=2"]
        + [a for k, v in TINY.items() for a in ("--set", f"model.{k}={v}")],
    )
    assert cli.exit_code == 0, cli.output
    rec = llmrec.train(data, tmp_path / "py", {"model": TINY}, epochs=2, progress=False)
    assert isinstance(rec, Recommender) and rec.path == tmp_path / "py"
    # the same defaults as the CLI: item attributes on (the tiny catalogue has categories), same weights
    assert (tmp_path / "py" / "attributes.json").is_file()
    assert json.loads((tmp_path / "py" / "config.json").read_text()) == json.loads((tmp_path / "cli" / "config.json").read_text())
    history = rec.histories[next(iter(rec.histories))]
    cli_rec = Recommender.load(tmp_path / "cli")
    assert torch.equal(rec.score_batch([history]), cli_rec.score_batch([history]))
    trained = json.loads((tmp_path / "py" / "training.json").read_text())
    assert trained["train"]["epochs"] == 2
    # without --model / model=: the library default, tvrec, with the recipe its spec declares under the user's keys
    assert trained["model"] == json.loads((tmp_path / "cli" / "training.json").read_text())["model"] == "tvrec"
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["model_type"] == "tvrec"
    assert (trained["train"]["batch_size"], trained["train"]["adam_beta2"], trained["train"]["lr"]) == (256, 0.999, 5e-4)

    report = llmrec.evaluate(rec, n_boot=10)  # the dataset the model records
    assert report == evaluate_model(tmp_path / "py", PreparedDataset.load(data), n_boot=10)
    assert report["test"]["ndcg@10"] == llmrec.evaluate(tmp_path / "cli", data, n_boot=10)["test"]["ndcg@10"]


def test_train_without_out_keeps_a_temporary_artifact_while_in_use(data: Path, tmp_path: Path) -> None:
    rec = llmrec.train(str(data), config=None, model="most-popular", progress=False)
    assert rec.path is not None and (rec.path / "config.json").is_file()
    assert len(rec.recommend(user=next(iter(rec.histories)), k=3)) == 3
    folder = rec.path.parent
    del rec
    import gc

    gc.collect()
    assert not folder.exists()


def test_train_refuses_unknown_keys_and_a_toml_config_works(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model.d_modle"):
        llmrec.train(data, tmp_path / "bad", d_modle=16, progress=False)
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\nd_model = 16\nn_layers = 1\nd_ff = 32\nmax_seq_len = 8\n[train]\nepochs = 1\n")
    rec = llmrec.train(data, tmp_path / "m", toml, progress=False, train__patience=1)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["d_model"] == 16
    assert json.loads((tmp_path / "m" / "training.json").read_text())["train"]["patience"] == 1
    assert rec.model.config.d_model == 16  # type: ignore[union-attr]


USER_SNIPPET = """
from llmrec import Recommender, train

rec: Recommender = train("data", out="model", epochs=3)
names: list[str] = [r.item_id for r in rec.recommend(history=["1", "5"], k=10)]
"""


@pytest.mark.timeout(1200)
def test_a_users_snippet_type_checks(tmp_path: Path) -> None:
    """``from llmrec import train; train(...)`` is a plain function returning a Recommender to a type checker
    (a callable module was "Module not callable" to mypy). Uses the project's mypy cache (warm after
    scripts/check, a few seconds; a cold cache analyses torch's stubs first, minutes)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]

    def mypy(text: str) -> subprocess.CompletedProcess[str]:
        snippet = tmp_path / "snippet.py"
        snippet.write_text(text)
        return subprocess.run([sys.executable, "-m", "mypy", "--strict", str(snippet)], capture_output=True, text=True, cwd=root)

    checked = mypy(USER_SNIPPET)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    wrong = mypy(USER_SNIPPET + "wrong: int = train('data')\n")  # the return type is known, not Any
    assert wrong.returncode == 1 and '"Recommender", variable has type "int"' in wrong.stdout, wrong.stdout


def test_evaluate_refuses_data_the_model_was_not_trained_on(data: Path, tmp_path: Path) -> None:
    import polars as pl

    from llmrec.data import PrepareConfig, RawData, prepare

    llmrec.train(data, tmp_path / "m", model="most-popular", progress=False)
    # other data with the same number of items: scored as is, it would give numbers for the wrong catalogue
    base = PreparedDataset.load(data)
    n = base.n_items
    rows = [(f"v{u}", f"other{(u + t) % n}", t) for u in range(12) for t in range(6)]
    events = pl.DataFrame(rows, schema={"user": pl.String, "item": pl.String, "time": pl.Int64}, orient="row", strict=False)
    prepare(RawData(events=events, items=None, users=None, domain="generic", source_files=[]), PrepareConfig()).save(
        tmp_path / "other"
    )
    with pytest.raises(ValueError, match="not the data it was trained on"):
        llmrec.evaluate(tmp_path / "m", tmp_path / "other", n_boot=10)


def test_evaluate_names_a_damaged_dataset_json(data: Path, tmp_path: Path) -> None:
    llmrec.train(data, tmp_path / "m", model="most-popular", progress=False)
    (tmp_path / "m" / "dataset.json").write_text('{"prepared_path": ')
    with pytest.raises(ValueError, match=str(tmp_path / "m" / "dataset.json")):
        llmrec.evaluate(tmp_path / "m", n_boot=10)


def test_train_and_evaluate_do_not_need_the_command_line(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "llmrec.cli", None)  # importing it now raises ImportError
    monkeypatch.setitem(sys.modules, "typer", None)
    rec = llmrec.train(data, tmp_path / "m", model="most-popular", progress=False)
    report = llmrec.evaluate(rec, n_boot=10)
    assert 0.0 <= report["test"]["ndcg@10"] <= 1.0


@pytest.mark.parametrize("decoy", ["config.json", None])
def test_train_refuses_a_users_folder_before_any_work(data: Path, tmp_path: Path, decoy: str | None) -> None:
    """llmrec.train(out=...) checks the output as `llmrec train --out` does: a folder holding a user's files is
    refused before training, even when it happens to hold a file named config.json, and nothing in it changes."""
    out = tmp_path / "mine"
    (out / "chapters").mkdir(parents=True)
    (out / "thesis.tex").write_text("x")
    if decoy:
        (out / decoy).write_text("{}")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises((ValueError, FileExistsError), match="mine"):
        llmrec.train(data, out=out, epochs=1)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    with pytest.raises(ValueError, match="inside the input"):
        llmrec.train(data, out=data / "model", epochs=1)
