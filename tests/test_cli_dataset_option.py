"""`--dataset` means the same everywhere: a prepared folder or a registry name; anything else is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmrec.cli import app


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "--model", "m"],
        ["tune", "--out", "best.toml"],
        ["meta-train", "--base", "m", "--out", "o"],
        ["map-cold-items", "--model", "m", "--out", "o"],
        ["train", "--out", "o"],
    ],
    ids=lambda c: c[0],
)
def test_dataset_is_a_prepared_folder_or_a_registry_name(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [*command, "--dataset", "no-such-data"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --dataset 'no-such-data' is neither a prepared dataset folder nor a registry name")
    assert list(tmp_path.iterdir()) == []  # nothing written
