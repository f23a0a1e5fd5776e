"""`llmrec train / evaluate / recommend / tune` through typer's CliRunner on the tiny prepared dataset."""

from __future__ import annotations

import csv
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner, Result

from llmrec.cli import app
from llmrec.data import PreparedDataset

runner = CliRunner()

# A model small enough for a test: every neural run below uses these sizes.
TINY = ["--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "model.d_ff=32", "--set", "model.max_seq_len=8"]
TWO_EPOCHS = ["--set", "train.epochs=2"]
ARTIFACT_FILES = {"config.json", "model.safetensors", "items.parquet", "histories.parquet", "dataset.json", "training.json"}


def _invoke(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def _train(data: Path, out: Path, model: str = "next-item-lm", *args: str | Path) -> Result:
    return _invoke("train", "--dataset", data, "--out", out, "--model", model, *args)


def _assert_user_error(result: Result, *fragments: str) -> None:
    """Exit code 2 with `error: ...` on stderr naming every fragment, and no traceback."""
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert "Traceback" not in result.output


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _no_temporary_folders(parent: Path) -> None:
    # training state (.M.train) and half-written artifacts (.M.tmp-*) must not outlive a finished command
    assert not [p.name for p in parent.iterdir() if p.name.startswith(".")]


@pytest.fixture
def data(tiny_prepared: PreparedDataset, tmp_path: Path) -> Path:
    return tiny_prepared.save(tmp_path / "data")


@pytest.fixture
def lm(data: Path, tmp_path: Path) -> Path:
    """A next-item LM trained for two epochs through the CLI."""
    result = _train(data, tmp_path / "lm", "next-item-lm", *TWO_EPOCHS, *TINY)
    assert result.exit_code == 0, result.output
    return tmp_path / "lm"


@pytest.fixture
def popular(data: Path, tmp_path: Path) -> Path:
    """A most-popular model (instant): enough for the argument checks of `recommend`."""
    result = _train(data, tmp_path / "pop", "most-popular")
    assert result.exit_code == 0, result.output
    return tmp_path / "pop"


# ---- train -------------------------------------------------------------------------------------------------------
def test_selected_epoch_trains_that_many_epochs_without_a_selection_run(data: Path, tmp_path: Path) -> None:
    """--set train.selected_epoch=N: one run of N epochs on train + valid, no validation, same schedule as a selection."""
    out = tmp_path / "fixed"
    result = _train(data, out, "next-item-lm", "--set", "train.epochs=3", "--set", "train.selected_epoch=2", *TINY)
    assert result.exit_code == 0, result.output
    assert "no selection run" in result.stdout and "valid ndcg" not in result.stdout  # nothing was validated
    summary = _json(out / "training.json")
    assert summary["epochs_run"] == 2 and summary["train"]["selected_epoch"] == 2 and summary["best_valid"] is None
    assert not (out / "train" / "refit").exists()  # the only run is the fixed-length one
    with (out / "train" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1.0", "2.0"] and not any(k.startswith("valid_") for k in rows[0])
    too_long = _train(data, tmp_path / "bad", "next-item-lm", "--set", "train.epochs=3", "--set", "train.selected_epoch=4", *TINY)
    _assert_user_error(too_long, "selected_epoch")


def test_continue_refit_is_recorded_and_said(data: Path, tmp_path: Path) -> None:
    """--set train.refit=continue: the summary says the selected model trained on, training.json records the tail,
    and the tail's state is kept under train/refit."""
    out = tmp_path / "cont"
    cont = ["--set", "train.refit=continue", "--set", "train.refit_epochs=1"]
    result = _train(data, out, "next-item-lm", *TWO_EPOCHS, *cont, *TINY)
    assert result.exit_code == 0, result.output
    summary = _json(out / "training.json")
    assert summary["train"]["refit"] == "continue" and summary["train"]["refit_epochs"] == 1
    said = " ".join(result.stdout.split())
    assert f"the epoch-{summary['best_epoch']} model trained 1 more epoch on train + valid" in said
    with (out / "train" / "refit" / "metrics.csv").open() as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1.0"]
    fixed = _train(data, tmp_path / "fixed", "next-item-lm", *TWO_EPOCHS, *cont, "--set", "train.selected_epoch=2", *TINY)
    assert fixed.exit_code == 0, fixed.output
    assert "2 on training events, then 1 on train + valid events" in " ".join(fixed.stdout.split())
    _assert_user_error(_train(data, tmp_path / "bad", "next-item-lm", "--set", "train.refit=warm", *TINY), "refit")


@pytest.mark.parametrize("model", ["next-item-lm", "sasrec", "most-popular", "item-knn"])
def test_train_writes_an_artifact(model: str, data: Path, tmp_path: Path) -> None:
    neural = model in ("next-item-lm", "sasrec")
    out = tmp_path / "model"
    # The baselines have no d_model, n_layers, ...; they take the [train] section and ignore it.
    result = _train(data, out, model, *TWO_EPOCHS, *(TINY if neural else []))
    assert result.exit_code == 0, result.output
    assert f"trained {model}" in result.stdout and f"model written to {out}" in result.stdout
    assert "time" in result.stdout and '{"' not in result.stdout  # a table, not raw JSON
    if neural:
        assert "best epoch" in result.stdout and "valid ndcg@10" in result.stdout

    assert ARTIFACT_FILES <= {p.name for p in out.iterdir()}
    summary = _json(out / "training.json")
    assert summary["model"] == model and summary["dataset"] == str(data.resolve())
    assert _json(out / "dataset.json")["prepared_path"] == str(data.resolve())  # what `evaluate` falls back on
    config = _json(out / "config.json")
    if neural:
        assert config["model_type"] == "next-item-lm"
        assert (config["d_model"], config["n_layers"], config["d_ff"], config["max_seq_len"]) == (16, 1, 32, 8)
        assert summary["epochs_run"] == 2 and summary["train"]["epochs"] == 2
        with (out / "train" / "metrics.csv").open() as f:
            assert [row["epoch"] for row in csv.DictReader(f)] == ["1.0", "2.0"]
    else:
        assert config["model_type"] == model
    if model == "sasrec":  # the paper's preset sits under the user's [model] keys
        assert (config["loss"], config["n_heads"]) == ("bce", 1)
    _no_temporary_folders(tmp_path)


def test_config_file_then_set_precedence(data: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("[model]\nd_model = 32\nn_layers = 1\nd_ff = 32\nmax_seq_len = 8\n\n[train]\nepochs = 1\nlr = 0.01\n")
    out = tmp_path / "model"
    result = _train(data, out, "next-item-lm", "--config", config, "--set", "model.d_model=16", "--set", "train.epochs=2")
    assert result.exit_code == 0, result.output

    saved = _json(out / "config.json")
    assert saved["d_model"] == 16  # --set beats the file
    assert (saved["d_ff"], saved["max_seq_len"]) == (32, 8)  # the file beats the defaults
    from llmrec.models import NextItemLMConfig

    assert saved["dropout"] == NextItemLMConfig(n_items=1).dropout  # a default nobody set
    train = _json(out / "training.json")["train"]
    assert (train["epochs"], train["lr"]) == (2, 0.01)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("model.foo=1", "model.foo"),
        ("train.lr=abc", "train.lr"),
        ("optim.lr=0.1", "optim"),
        ("lr=0.1", "section.key=value"),
    ],
)
def test_bad_set_exits_2_naming_the_key(override: str, named: str, data: Path, tmp_path: Path) -> None:
    result = _train(data, tmp_path / "model", "next-item-lm", *TINY, "--set", override)
    _assert_user_error(result, named)
    assert not (tmp_path / "model").exists()
    _no_temporary_folders(tmp_path)


@pytest.mark.parametrize("model", ["most-popular", "item-knn"])
def test_baselines_reject_transformer_keys(model: str, data: Path, tmp_path: Path) -> None:
    result = _train(data, tmp_path / "model", model, "--set", "model.d_model=16")
    _assert_user_error(result, "d_model")


def test_t5_on_collaborative_semantic_ids_through_the_cli(
    lm: Path, data: Path, tmp_path: Path, tiny_prepared: PreparedDataset
) -> None:
    """t5-semantic with ids from a trained next-item LM's item table (no text encoder involved), then recommend."""
    t5_args = [
        "--set",
        "model.d_model=16",
        "--set",
        "model.n_layers=1",
        "--set",
        "model.d_ff=32",
        "--set",
        "model.max_seq_len=5",
        "--set",
        "model.n_levels=2",
        "--set",
        "model.codebook_size=4",
        "--set",
        "model.num_beams=8",
        "--set",
        "train.epochs=1",
    ]
    out = tmp_path / "t5"
    result = _train(
        data, out, "t5-semantic", *t5_args, "--set", "model.semantic_source=collaborative", "--set", f"model.collab_model={lm}"
    )
    assert result.exit_code == 0, result.output
    assert _json(out / "config.json")["model_type"] == "t5-semantic"
    stats = _json(out / "training.json")["semantic_ids"]
    assert stats, stats
    raw = tiny_prepared.raw_item_ids()
    rec = _invoke("recommend", "--model", out, "--history", f"{raw[0]},{raw[1]}", "-k", "3", "--json")
    assert rec.exit_code == 0, rec.output
    assert [r["rank"] for r in json.loads(rec.stdout)] == [1, 2, 3]
    # a missing LM directory is a user error naming the key, and leaves nothing behind
    bad = _train(
        data,
        tmp_path / "t5bad",
        "t5-semantic",
        *t5_args,
        "--set",
        "model.semantic_source=collaborative",
        "--set",
        f"model.collab_model={tmp_path / 'nope'}",
    )
    _assert_user_error(bad, "model.collab_model")
    assert not (tmp_path / "t5bad").exists()


def test_resume_a_finished_run(lm: Path, data: Path, tmp_path: Path) -> None:
    before = load_file(str(lm / "model.safetensors"))
    result = _train(data, lm, "next-item-lm", *TWO_EPOCHS, *TINY, "--resume")
    assert result.exit_code == 0, result.output
    assert not re.search(r"^(refit )?epoch +\d", result.stdout, re.MULTILINE)  # nothing left to train

    assert _json(lm / "training.json")["epochs_run"] == 2
    with (lm / "train" / "metrics.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2  # history kept, not duplicated
    after = load_file(str(lm / "model.safetensors"))
    assert before.keys() == after.keys()
    assert all((before[k] == after[k]).all() for k in before)  # the best weights again
    _no_temporary_folders(tmp_path)


def test_a_fresh_run_replaces_the_log_of_an_interrupted_one(data: Path, tmp_path: Path) -> None:
    stale = tmp_path / ".model.train"  # what an interrupted `train --out model` leaves behind
    stale.mkdir()
    (stale / "metrics.csv").write_text("epoch,train_loss\n7.0,9.9\n")
    result = _train(data, tmp_path / "model", "next-item-lm", *TWO_EPOCHS, *TINY)
    assert result.exit_code == 0, result.output
    with (tmp_path / "model" / "train" / "metrics.csv").open() as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1.0", "2.0"]


def test_resume_without_a_run_is_a_user_error(data: Path, tmp_path: Path) -> None:
    result = _train(data, tmp_path / "model", "next-item-lm", *TWO_EPOCHS, *TINY, "--resume")
    _assert_user_error(result, "--resume", "no checkpoint")


# ---- evaluate ------------------------------------------------------------------------------------------------------
def _evaluate(model: Path, out: Path, *args: str) -> dict[str, Any]:
    result = _invoke("evaluate", "--model", model, "--out", out, "--n-boot", "20", *args)
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = _json(out)
    return report


def test_evaluate_writes_json_markdown_and_png(lm: Path, tmp_path: Path) -> None:
    out = tmp_path / "R.json"
    result = _invoke("evaluate", "--model", lm, "--out", out, "--n-boot", "20")
    assert result.exit_code == 0, result.output
    for suffix in (".json", ".md", ".png"):
        assert f"wrote {out.with_suffix(suffix)}" in result.stdout
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## test" in out.with_suffix(".md").read_text()

    report = _json(out)
    for split in ("valid", "test"):
        for metric in ("recall@10", "ndcg@10"):
            value = report[split][metric]
            assert isinstance(value, float) and 0.0 <= value <= 1.0, (split, metric, value)
    assert report["protocol"]["exclude_seen"] is report["protocol"]["served_exclude_seen"]  # the model's rule
    assert report["protocol"]["ranking"] == "full"
    assert "sampled" not in report


def test_evaluate_exclude_seen_flips_the_protocol(lm: Path, tmp_path: Path) -> None:
    report = _evaluate(lm, tmp_path / "R.json", "--exclude-seen")
    assert report["protocol"]["exclude_seen"] is True
    assert "excluded" in _invoke("evaluate", "--model", lm, "--n-boot", "20", "--exclude-seen").stdout


def test_evaluate_sampled_numbers_live_under_their_own_key(lm: Path, tmp_path: Path) -> None:
    full = _evaluate(lm, tmp_path / "full.json")
    with_sampled = _evaluate(lm, tmp_path / "sampled.json", "--sampled", "20")

    assert set(with_sampled["sampled"]) == {"valid", "test"}
    for values in with_sampled["sampled"].values():
        assert values and all(key.startswith("sampled-20/") for key in values)
    # the full-ranking tables are untouched
    for split in ("valid", "test"):
        assert with_sampled[split] == full[split]
    assert {k for k in with_sampled if k != "sampled"} == set(full)


# ---- recommend -----------------------------------------------------------------------------------------------------
def test_recommend_for_a_user_prints_k_rows(lm: Path, tiny_prepared: PreparedDataset) -> None:
    user = tiny_prepared.users["user"][0]
    result = _invoke("recommend", "--model", lm, "--user", user, "-k", "3")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]  # table body, not the header
    assert len(rows) == 3
    assert [row.split("│")[1].strip() for row in rows] == ["1", "2", "3"]


def test_recommend_for_a_history_as_json(lm: Path, tiny_prepared: PreparedDataset) -> None:
    raw = tiny_prepared.raw_item_ids()
    result = _invoke("recommend", "--model", lm, "--history", f"{raw[0]},{raw[1]}", "-k", "4", "--json")
    assert result.exit_code == 0, result.output
    recs = json.loads(result.stdout)
    assert [r["rank"] for r in recs] == [1, 2, 3, 4]
    titles = dict(zip(tiny_prepared.items["item"].to_list(), tiny_prepared.items["title"].to_list(), strict=True))
    for r in recs:
        assert r["title"] == titles[r["item_id"]]
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--history", "1,no-such-item"], "no-such-item"),
        (["--user", "no-such-user"], "no-such-user"),
    ],
)
def test_recommend_unknown_id_exits_2(args: list[str], named: str, popular: Path) -> None:
    _assert_user_error(_invoke("recommend", "--model", popular, *args, "--strict"), named)


@pytest.mark.parametrize("args", [[], ["--user", "u01", "--history", "1,2"]], ids=["neither", "both"])
def test_recommend_needs_exactly_one_of_user_or_history(args: list[str], popular: Path) -> None:
    _assert_user_error(_invoke("recommend", "--model", popular, *args), "exactly one of --user")


# ---- tune ----------------------------------------------------------------------------------------------------------
def _tune_then_train(data: Path, tmp_path: Path, model: str = "next-item-lm", base: list[str] = TINY) -> dict[str, Any]:
    best = tmp_path / "best.toml"
    args = ["--model", model, "--dataset", data, "--out", best, "--trials", "2", "--budget-minutes", "1"]
    result = _invoke("tune", *args, *TWO_EPOCHS, *base)
    assert result.exit_code == 0, result.output
    assert "after 2 trials" in result.stdout
    assert "epochs=" not in result.stderr and "max_seq_len=" not in result.stderr  # set by --set: held, not searched
    sections = tomllib.loads(best.read_text())
    assert set(sections) == {"model", "train"}
    assert sections["train"]["epochs"] == 2  # the base config survives the search
    assert f"llmrec train --model {model} --config best.toml" in best.read_text()

    result = _train(data, tmp_path / "model", model, "--config", best)
    assert result.exit_code == 0, result.output
    config = _json(tmp_path / "model" / "config.json")
    assert config["model_type"] == model and config["d_model"] == sections["model"]["d_model"]
    assert config["dropout"] == sections["model"]["dropout"]  # the searched value is the one trained
    return sections


def _tiny_space(model: str) -> dict[str, Any]:
    """One value per size keeps the trials tiny; every kind of parameter (categorical, float, log) still runs."""
    from llmrec.models.spec import SearchParam

    shared = {"dropout": SearchParam("model", "float", 0.1, 0.2), "lr": SearchParam("train", "float", 1e-3, 1e-2, log=True)}
    if model == "tvrec":
        return {"n_basis": SearchParam("model", "categorical", choices=(4,)), **shared}
    return {
        "d_model": SearchParam("model", "categorical", choices=(16,)),
        "n_layers": SearchParam("model", "categorical", choices=(1,)),
        **shared,
    }


@pytest.mark.parametrize("model", ["next-item-lm", "tvrec"])
def test_tune_writes_a_config_that_train_accepts(model: str, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("optuna")
    import llmrec.tune

    monkeypatch.setattr(llmrec.tune, "search_space", lambda _model: _tiny_space(model))
    sections = _tune_then_train(data, tmp_path, model)
    params, train = sections["model"], sections["train"]
    assert params["max_seq_len"] == 8  # from the base --set, not searched
    assert 0.1 <= params["dropout"] <= 0.2 and 1e-3 <= train["lr"] <= 1e-2
    if model == "tvrec":
        assert params["n_basis"] == 4 and params["emb_dropout"] == params["dropout"]  # TV-Rec's one hidden dropout
        assert (train["batch_size"], train["adam_beta2"], train["examples"]) == (256, 0.999, "prefixes")  # its recipe
        assert _json(tmp_path / "model" / "config.json")["n_basis"] == 4
    else:  # d_model and n_layers are searched, but --set fixes them (and d_ff): the base's values are held
        assert (params["d_model"], params["n_layers"], params["d_ff"]) == (16, 1, 32)


def test_tune_with_the_real_search_space(data: Path, tmp_path: Path) -> None:
    # d_model up to 128 and 3 layers, but 20 users and 2 epochs: still well under a second per trial.
    pytest.importorskip("optuna")
    from llmrec.models.next_item_lm import SEARCH_SPACE

    sections = _tune_then_train(data, tmp_path, base=["--set", "model.max_seq_len=8"])
    assert sections["model"]["d_model"] in SEARCH_SPACE["d_model"].choices
    assert sections["model"]["d_ff"] == 4 * sections["model"]["d_model"]  # follows the searched width


def test_map_cold_items_writes_a_mapped_copy_that_recommends(data: Path, lm: Path, tmp_path: Path) -> None:
    """Items absent from training get text-mapped rows; warm rows and the base artifact stay as they were."""
    import numpy as np
    import torch

    from llmrec.models.cold_items import untrained_items
    from llmrec.models.next_item_lm import NextItemLM
    from llmrec.recommend import Recommender

    ds = PreparedDataset.load(data)
    cold = untrained_items(ds, refit=_json(lm / "training.json")["train"]["refit_on_valid"])
    assert len(cold) > 0, "fixture: some item must be missing from training"
    result = _invoke("map-cold-items", "--model", lm, "--dataset", data, "--out", tmp_path / "mapped", "--ridge", "1.0")
    assert result.exit_code == 0, result.output
    assert f"mapped {len(cold)} items in no training event" in result.stdout
    if not _json(lm / "training.json")["train"]["refit_on_valid"]:  # `data stats` counts the same items
        stats = json.loads(_invoke("data", "stats", data, "--json").stdout)
        assert stats["untrained_items"] == len(cold)
    base, mapped = NextItemLM.from_pretrained(lm).eval(), NextItemLM.from_pretrained(tmp_path / "mapped").eval()
    with torch.no_grad():
        tb, tm = base.item_table(), mapped.item_table()
    warm = np.setdiff1d(np.arange(1, ds.n_items + 1), cold)
    assert torch.equal(tb[warm], tm[warm]) and not torch.allclose(tb[cold], tm[cold])
    assert _json(tmp_path / "mapped" / "text_map.json")["cold_items"] == len(cold)
    assert ARTIFACT_FILES <= {p.name for p in (tmp_path / "mapped").iterdir()}
    recs = Recommender.load(tmp_path / "mapped").recommend(user=ds.users["user"][0], k=3)
    assert len(recs) == 3
    _no_temporary_folders(tmp_path)


def test_map_cold_items_by_features_zeroes_the_untrained_id_rows(data: Path, tmp_path: Path) -> None:
    """--method features: the untrained items' id rows become zero (their attributes alone place them); warm rows
    are unchanged; a model with ids only is refused (nothing else would place the items)."""
    import numpy as np
    import torch

    from llmrec.models.cold_items import untrained_items
    from llmrec.models.next_item_lm import NextItemLM

    attr = tmp_path / "attr"
    trained = _train(data, attr, "next-item-lm", *TWO_EPOCHS, *TINY, "--set", "model.use_attributes=true")
    assert trained.exit_code == 0, trained.output
    result = _invoke("map-cold-items", "--model", attr, "--dataset", data, "--out", tmp_path / "zeroed", "--method", "features")
    assert result.exit_code == 0, result.output
    assert "by their item features alone (id rows zeroed)" in " ".join(result.stdout.split())
    ds = PreparedDataset.load(data)
    cold = untrained_items(ds, refit=_json(attr / "training.json")["train"]["refit_on_valid"])
    base, zeroed = NextItemLM.from_pretrained(attr), NextItemLM.from_pretrained(tmp_path / "zeroed")
    warm = np.setdiff1d(np.arange(1, ds.n_items + 1), cold)
    assert torch.equal(base.item_emb.weight[warm], zeroed.item_emb.weight[warm])
    assert not torch.any(zeroed.item_emb.weight[cold]) and torch.any(base.item_emb.weight[cold])
    assert _json(tmp_path / "zeroed" / "text_map.json")["method"] == "features"
    ids = tmp_path / "ids-only"
    assert _train(data, ids, "next-item-lm", *TWO_EPOCHS, *TINY, "--set", "model.use_attributes=false").exit_code == 0
    _assert_user_error(
        _invoke("map-cold-items", "--model", ids, "--dataset", data, "--out", tmp_path / "ids", "--method", "features"),
        "needs a model trained with item text or attributes",
    )
    _assert_user_error(
        _invoke("map-cold-items", "--model", attr, "--dataset", data, "--out", tmp_path / "bad", "--method", "zero"),
        "--method must be text-map or features",
    )
    assert not (tmp_path / "ids").exists() and not (tmp_path / "bad").exists()


def test_map_cold_items_refuses_bad_input(data: Path, lm: Path, tmp_path: Path) -> None:
    _assert_user_error(
        _invoke("map-cold-items", "--model", data, "--dataset", data, "--out", tmp_path / "x"), "not a model artifact"
    )
    _assert_user_error(_invoke("map-cold-items", "--model", lm, "--dataset", data, "--out", lm), "--out must differ")
    _assert_user_error(
        _invoke("map-cold-items", "--model", lm, "--dataset", data, "--out", tmp_path / "y", "--ridge", "-1"),
        "ridge must be >= 0",
    )
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
