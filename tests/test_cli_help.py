"""Help texts print as written (no Rich markup eating "[...]"), `--version`, and `train --epochs`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import llmrec
from llmrec.cli import app
from llmrec.data import PreparedDataset

runner = CliRunner()


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = [(path, group)]
    if hasattr(group, "commands"):  # a group (typer's own click-compatible classes)
        for name, sub in group.commands.items():
            out += _commands(sub, (*path, name))
    return out


def _flat(text: str) -> str:
    """Without whitespace: the help formatter wraps lines, and breaks long words and hyphenated ones."""
    return "".join(text.split())


COMMANDS = _commands(typer.main.get_command(app))


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "llmrec" for p, _ in COMMANDS])
def test_help_keeps_every_option_text_whole(path: tuple[str, ...], command: Any) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "()" not in result.stdout
    shown = _flat(result.stdout)
    for param in command.params:
        text = getattr(param, "help", None)
        if text:  # every word of the help, brackets included, in order: nothing lost to markup
            assert _flat(text) in shown, (param.name, text)
    for line in result.stdout.splitlines():  # a double space between words is where bracketed text vanished
        assert not re.search(r"[a-z,]  [a-z]", line.strip()), line


def test_bracketed_text_survives() -> None:
    train = _flat(runner.invoke(app, ["train", "--help"], env={"COLUMNS": "100"}).stdout)
    assert _flat("TOML file with [model] and [train] sections.") in train
    evaluate = _flat(runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "100"}).stdout)
    assert _flat("[default: loo, the model's served rule; cold-start, yes]") in evaluate


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"llmrec {llmrec.__version__}"


def test_epochs_is_a_shortcut_for_set_train_epochs(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    data = tiny_prepared.save(tmp_path / "data")
    result = runner.invoke(
        app, ["train", "--dataset", str(data), "--out", str(tmp_path / "m"), "--model", "most-popular", "--epochs", "4"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "m" / "training.json").read_text())
    assert summary["model"] == "most-popular"
    tiny = ["--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "model.d_ff=32", "--set", "model.max_seq_len=8"]
    lm = runner.invoke(app, ["train", "--dataset", str(data), "--out", str(tmp_path / "lm"), "--epochs", "1", *tiny])
    assert lm.exit_code == 0, lm.output
    assert json.loads((tmp_path / "lm" / "training.json").read_text())["train"]["epochs"] == 1
    assert "best epoch" in lm.stdout and "refit epoch" in lm.output  # the refit's progress lines say so


def test_train_help_lists_every_training_recipe() -> None:
    """The --model help is plain text (no torch import at --help): it must name every registered recipe."""
    from typer.testing import CliRunner

    from llmrec.cli import app
    from llmrec.training.recipes import RECIPES

    out = "".join(CliRunner().invoke(app, ["train", "--help"]).stdout.split())  # help wraps at the terminal width
    assert [name for name in RECIPES if name not in out] == []
