"""`--help` for every command and sub-command of `llmrec`, found by walking the click tree, and without torch."""

from __future__ import annotations

import subprocess
import sys

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from llmrec.cli import app

runner = CliRunner()


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path below the root, groups included: ("data",), ("data", "prepare"), ("train",), ...

    Groups are found by their ``commands`` mapping: typer may build on its own copy of click, so an
    ``isinstance(..., click.Group)`` check would find none.
    """
    paths = [prefix] if prefix else []
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths += _command_paths(sub, (*prefix, name))
    return paths


PATHS = _command_paths(typer.main.get_command(app))


def test_the_walk_finds_every_known_command() -> None:
    # Guards the parametrisation below: a walk that found nothing would pass vacuously.
    known = {("data",), ("data", "prepare"), ("data", "stats"), ("data", "list")}
    known |= {("train",), ("evaluate",), ("recommend",), ("tune",)}
    assert known <= set(PATHS)


@pytest.mark.parametrize("path", [(), *PATHS], ids=lambda p: " ".join(p) or "llmrec")
def test_help(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: {' '.join(('llmrec', *path))} [OPTIONS]" in result.stdout
    assert "--help" in result.stdout
    assert result.stderr == ""


def test_help_of_every_command_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from llmrec.cli import app\n"
        f"for path in {[list(p) for p in [(), *PATHS]]!r}:\n"
        "    result = CliRunner().invoke(app, [*path, '--help'])\n"
        "    assert result.exit_code == 0, (path, result.output)\n"
        "print(sorted(m for m in ('torch', 'polars', 'optuna', 'matplotlib') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
