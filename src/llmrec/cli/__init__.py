"""The ``llmrec`` command line (entry point ``main``; ``python -m llmrec.cli`` runs it too, e.g. under torchrun).

Layout: ``app`` is the root Typer app; each module holds one group of commands, registered here in the order
``llmrec --help`` lists them: `llmrec.cli.data` (the ``data`` sub-app), `llmrec.cli.model` (train, evaluate,
meta-train, map-cold-items, export, tune), `llmrec.cli.recommend` (recommend, explain) and `llmrec.cli.serve`
(build-index, serve). What every command shares (the consoles, and `user_errors`, the one place that turns bad
user input into ``error: ...`` on stderr and exit code 2 without a traceback) is in `llmrec.cli.common`.

Each command parses its options, makes one library call and prints; the work is in the library. Imports of
torch, polars and ``llmrec.data`` happen inside the command functions, so ``llmrec --help`` stays fast and
imports neither (``tests/test_cli_data.py`` checks this).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from llmrec.cli import model as _model
from llmrec.cli import recommend as _recommend
from llmrec.cli import serve as _serve
from llmrec.cli.data import data_app

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["app", "data_app", "main"]

# rich_markup_mode=None: help texts are plain text, so "[model] and [train] sections" or "[default: ...]" print
# as written instead of being eaten as Rich markup tags.
app = typer.Typer(
    name="llmrec",
    help="LLM-style generative recommendation: prepare data, train, evaluate, recommend, serve.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from llmrec import __version__

        typer.echo(f"llmrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """LLM-style generative recommendation: prepare data, train, evaluate, recommend, serve."""


app.add_typer(data_app, name="data")
app.command("train")(_model.train_cmd)
app.command("evaluate")(_model.evaluate_cmd)
app.command("meta-train")(_model.meta_train_cmd)
app.command("map-cold-items")(_model.map_cold_items_cmd)
app.command("recommend")(_recommend.recommend_cmd)
app.command("export")(_model.export_cmd)
app.command("explain")(_recommend.explain_cmd)
app.command("tune")(_model.tune_cmd)
app.command("build-index")(_serve.build_index_cmd)
app.command("serve")(_serve.serve_cmd)

# `llmrec serve --workers N`: uvicorn imports `llmrec.cli:_serve_app_from_env` in each worker process, which builds
# the app from the settings the parent left in this environment variable (`llmrec.cli.serve`).
_SERVE_SETTINGS_ENV = _serve.SERVE_SETTINGS_ENV


def _serve_app_from_env() -> FastAPI:
    """The app of one uvicorn worker process (``--workers`` > 1)."""
    return _serve.app_from_env()


def main() -> None:
    """Run the command line; SIGTERM stops it as Ctrl-C does (exit code 143; `llmrec.cli.signals`). A replacement
    of a path it names that ``kill -9`` stopped half-way is recovered first (`llmrec.atomic.recover_arguments`)."""
    import sys

    from llmrec.atomic import recover_arguments
    from llmrec.cli.signals import run_stoppable

    recover_arguments(sys.argv[1:])
    run_stoppable(app)
