"""What every command shares: the two consoles, `user_errors` (bad input -> ``error: ...``, exit code 2, no
traceback), warnings as lines, number formatting, config sections, ``--dataset`` and the shared help texts.

Nothing heavy is imported here: ``llmrec --help`` imports this module, and must not import torch, numpy, polars
or ``llmrec.data`` (``tests/test_cli_data.py`` checks this).
"""

from __future__ import annotations

import errno
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from llmrec.errors import ChecksumError, DataError, DatasetNotFoundError

if TYPE_CHECKING:
    from llmrec.data import PreparedDataset

# stdout carries results (tables, JSON); stderr carries progress and errors, so `... --json > f` stays clean.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# User errors: bad files, bad options, missing or corrupted datasets. Anything else is a bug and keeps its
# traceback. DatasetNotFoundError is a FileNotFoundError; DataError and ChecksumError are ValueErrors; they are
# listed anyway so that the contract reads here.
USER_ERRORS: tuple[type[Exception], ...] = (
    DataError,
    ChecksumError,
    DatasetNotFoundError,
    ValueError,
    FileNotFoundError,
    FileExistsError,
    KeyError,  # llmrec.recommend.UnknownIdError: an unknown user or item id
)


@contextmanager
def user_errors() -> Iterator[None]:
    """Print a user error as ``error: <message>`` on stderr and exit with code 2 (no traceback)."""
    try:
        yield
    except USER_ERRORS as e:
        # markup=False: messages hold paths and lists such as ['purchase'] that rich would read as markup;
        # soft_wrap: a long path must stay on one line (no hard wraps inserted at the console width).
        err_console.print(f"error: {e}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except OSError as e:
        # The file system refused (read-only, permission denied, disk full ...): the path and the reason. The
        # writers are atomic, so nothing half-written is left behind.
        err_console.print(f"error: {os_error_message(e)}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def os_error_message(e: OSError) -> str:
    reason = e.strerror or str(e) or type(e).__name__
    if e.errno == errno.ENAMETOOLONG and e.filename is not None and (long_name := _name_too_long(e.filename)):
        return long_name
    return f"{e.filename}: {reason}" if e.filename is not None else reason


# The hidden siblings llmrec writes beside an output before it takes the output's place (`llmrec.atomic`,
# `llmrec.outputs`, the training run): ".<name>.tmp-<pid>-<random>", ".<name>.lock", ".<name>.train" ...
_HIDDEN_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?:tmp-[^/]*|lock|train|old-[^/]*)$")
_NAME_MAX = 255  # bytes in one file name (ext4, xfs, btrfs, tmpfs)


def _name_too_long(filename: str | bytes | os.PathLike[str]) -> str | None:
    """An output name that fits the file system, but whose hidden sibling does not: the error names the output and
    the longest name that fits, not the sibling nobody asked for (None when `filename` is no such sibling)."""
    path = Path(os.fsdecode(filename))
    m = _HIDDEN_SIBLING.match(path.name)
    if m is None or len(os.fsencode(m.group("name"))) > _NAME_MAX:
        return None  # not a hidden sibling, or the name itself is too long: the plain message says so
    name = m.group("name")
    extra = len(os.fsencode(path.name)) - len(os.fsencode(name))
    return (
        f"{path.parent / name}: the name is {len(os.fsencode(name))} bytes long, at most {_NAME_MAX - extra} fit "
        f"here: llmrec first writes the output under a hidden name {extra} bytes longer beside it; choose a "
        "shorter --out"
    )


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Python warnings raised inside (e.g. an ignored catalogue column) as one `warning: ...` line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                err_console.print(f"warning: {w.message}", markup=False, soft_wrap=True)


@contextmanager
def stages(first: str) -> Iterator[Callable[[str], None]]:
    """Progress of a long job told in stages (``update("writing ...")``): on a terminal, a spinner with the stage and
    the time since the start, and a line with each finished stage's seconds (large files: where the time goes);
    elsewhere (a log, a pipe) nothing."""
    if not err_console.is_terminal:
        yield lambda _text: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    stage, since = [first], [time.perf_counter()]
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console, transient=True
    ) as bar:
        task = bar.add_task(first, total=None)

        def update(text: str) -> None:
            now = time.perf_counter()
            bar.console.print(f"{stage[0].rstrip(' .')}: {now - since[0]:.1f} s", markup=False, soft_wrap=True)
            stage[0], since[0] = text, now
            bar.update(task, description=text)

        yield update


def say(message: str, *, err: bool = False) -> None:
    """One plain line (no markup, no hard wraps) on stdout, or stderr with err=True."""
    (err_console if err else console).print(message, markup=False, soft_wrap=True)


def fmt_int(n: float) -> str:
    return f"{int(n):,}"


def fmt_num(x: float) -> str:
    """A statistic for a table: integers with thousands separators, other values with 2 decimals."""
    return fmt_int(x) if float(x).is_integer() else f"{x:,.2f}"


def config_sections(config: Path | None, overrides: list[str] | None) -> dict[str, dict[str, Any]]:
    """--config FILE and --set overrides -> config sections (the overrides win)."""
    from llmrec.config import load_toml, merge_sections, parse_overrides

    file_sections = load_toml(config) if config is not None else {}
    return merge_sections(file_sections, parse_overrides(overrides or []))


def dataset_arg(dataset: str | Path, near: Path) -> PreparedDataset:
    """--dataset of any command: a prepared folder, or a registry name prepared (defaults) into `near/<name>-data`,
    with a spinner on stderr while it is prepared."""
    from llmrec.data import open_dataset

    return open_dataset(str(dataset), near / f"{dataset}-data", status=err_console.status)[0]


THREADS_HELP = "CPU threads for torch (and FAISS) in this command; 0 = leave the default (all cores, or $OMP_NUM_THREADS)."
# --threads of every command that computes: one option, one meaning (`use_threads` applies it).
Threads = Annotated[int, typer.Option("--threads", help=THREADS_HELP)]


def use_threads(threads: int) -> None:
    """Apply ``--threads`` (`llmrec.threads.use_threads`): torch's intra-op threads, and FAISS's OpenMP threads when
    FAISS is loaded; 0 leaves them. A negative count is a ValueError (inside `user_errors`: ``error: ...``, exit 2)."""
    from llmrec.threads import use_threads as apply

    apply(threads)


def use_data_threads(threads: int) -> None:
    """``data prepare --threads``: Polars' thread pool is sized once, when Polars is first imported, so the count goes
    into POLARS_MAX_THREADS before that (the CLI imports Polars only inside commands); 0 leaves Polars' default."""
    import os
    import sys

    if threads < 0 or threads > 4096:
        raise ValueError(f"--threads must be in 0..4096 (0 = the default), got {threads}")
    if threads and "polars" not in sys.modules:
        os.environ["POLARS_MAX_THREADS"] = str(threads)


DATASET_HELP = "A prepared dataset folder, or a registry name (prepared with the defaults next to the model)."
DEVICE_HELP = "auto | cpu | cuda (auto: CUDA when available)."
