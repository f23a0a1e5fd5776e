"""Shared test setup and tiny fixtures.

Environment, set at import so that it holds before any library code reads it:
- LLMREC_DATA_MIRROR: the shared reference datasets (``<repo>/../shared/datasets``) unless already set;
- LLMREC_CACHE_DIR, MPLCONFIGDIR: a temporary folder, removed at exit, so tests never write ``~/.cache``;
- HF_HUB_OFFLINE=1: a pretrained model must come from a local path, never the network;
- OMP_NUM_THREADS=1 (unless set): torch reads it on import; the machines have 2 shared cores.
torch itself is not imported here: a test checks that ``llmrec --help`` does not import it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from typer.testing import Result

    from llmrec.data import PreparedDataset, RawData

REPO = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.setdefault("LLMREC_DATA_MIRROR", str(REPO.parent / "shared" / "datasets")))

_TMP = Path(tempfile.mkdtemp(prefix="llmrec-tests-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
os.environ["LLMREC_CACHE_DIR"] = str(_TMP / "cache")
os.environ["MPLCONFIGDIR"] = str(_TMP / "matplotlib")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _torch_one_thread() -> Iterator[None]:
    """One torch thread in every test that runs with torch loaded, without importing torch ourselves."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    yield


# ---- tiny data: 20 users x 50 items ------------------------------------------------------------------------
# Built by a seeded generator so the list is the same on every machine; small enough to read in a debugger.
TINY_USERS = 20
TINY_ITEMS = 50


def tiny_events() -> list[tuple[str, str, int, float]]:
    """(user, item, time, value) rows in file order: users "u01".."u20", items "1".."50", 6-12 events each.

    Times are increasing per user with some ties (two events at the same second), ratings 1-5.
    """
    import numpy as np

    rng = np.random.default_rng(20240601)
    rows: list[tuple[str, str, int, float]] = []
    for u in range(1, TINY_USERS + 1):
        n = int(rng.integers(6, 13))
        items = rng.choice(TINY_ITEMS, size=n, replace=False) + 1
        steps = rng.integers(0, 4, size=n)  # a 0 step makes a tie in time
        times = 1_000_000 + u * 1_000 + np.cumsum(steps)
        values = rng.integers(1, 6, size=n)
        rows += [(f"u{u:02d}", str(i), int(t), float(v)) for i, t, v in zip(items, times, values, strict=True)]
    return rows


@pytest.fixture
def tiny_raw() -> RawData:
    """RawData of ~20 users x 50 items with a catalogue (title, text, categories) for every item."""
    import polars as pl

    from llmrec.data import RawData

    rows = tiny_events()
    events = pl.DataFrame(
        {
            "user": [r[0] for r in rows],
            "item": [r[1] for r in rows],
            "time": [r[2] for r in rows],
            "value": [r[3] for r in rows],
        },
        schema={"user": pl.String, "item": pl.String, "time": pl.Int64, "value": pl.Float64},
    )
    genres = ("drama", "comedy", "jazz", "rock", "sports")
    items = pl.DataFrame(
        {
            "item": [str(i) for i in range(1, TINY_ITEMS + 1)],
            "title": [f"Item {i}" for i in range(1, TINY_ITEMS + 1)],
            "text": [f"Item {i}, a {genres[i % 5]} thing." for i in range(1, TINY_ITEMS + 1)],
            "categories": [[genres[i % 5]] for i in range(1, TINY_ITEMS + 1)],
        },
        schema={"item": pl.String, "title": pl.String, "text": pl.String, "categories": pl.List(pl.String)},
    )
    return RawData(events=events, items=items, users=None, domain="generic", source_files=[])


@pytest.fixture
def tiny_prepared(tiny_raw: RawData) -> PreparedDataset:
    """tiny_raw prepared with the defaults: dedupe, no k-core, leave-one-out split."""
    from llmrec.data import PrepareConfig, prepare

    return prepare(tiny_raw, PrepareConfig(split="loo"))


def build_tiny_llm(folder: Path) -> Path:
    """A 12-layer random Llama (hidden size 16; 12 layers so that `LLMEncoder`'s default layer exists) with a word-level tokenizer, saved as a Hugging Face folder: stands in
    for SmolLM2 wherever a test needs a causal LM (loading it takes well under a second)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["red", "nail", "polish", "gentle", "cleanser", "soap", "cream", "for", "dry", "skin", ".", "item", "i1"]
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=12,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of `build_tiny_llm`, built once per test session."""
    return build_tiny_llm(tmp_path_factory.mktemp("llm") / "tiny-llm")


# ---- the command line in-process ---------------------------------------------------------------------------
class Cli:
    """`llmrec` run in-process (typer's CliRunner), tiny model/training settings, and the check every refusal
    must pass. Imports typer and the app only when first used, so collecting tests stays light."""

    TINY = ("--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "model.d_ff=32", "--set", "model.max_seq_len=8")
    QUICK = ("--set", "train.epochs=1", "--set", "train.refit_on_valid=false", "--set", "train.progress=false")

    def invoke(self, *args: str | Path) -> Result:
        from typer.testing import CliRunner

        from llmrec.cli import app

        return CliRunner().invoke(app, [str(a) for a in args])

    @staticmethod
    def assert_user_error(result: Result, *fragments: str) -> None:
        """Exit 2 and exactly one `error: ` line, the last one (progress bars may come first), holding every
        fragment; no traceback."""
        assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
        for fragment in fragments:
            assert fragment in errors[0], (fragment, errors[0])
        assert "Traceback" not in result.output


@pytest.fixture(scope="session")
def cli() -> Cli:
    """The `Cli` helper (session-wide, so module-scoped fixtures can use it too)."""
    return Cli()


# ---- a real server -------------------------------------------------------------------------------------------
@pytest.fixture
def serve_in_thread() -> Iterator[Callable[..., tuple[Any, threading.Thread, str, int]]]:
    """serve_in_thread(app, **uvicorn.Config options) -> (server, thread, host, port): uvicorn serving `app` in a
    daemon thread on a socket bound to 127.0.0.1 at a port the OS picks, started before it returns (an assertion
    error if it has not within 30 s); every server still running is stopped after the test."""
    import socket
    import time

    import uvicorn

    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Any, **options: Any) -> tuple[uvicorn.Server, threading.Thread, str, int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # the OS picks a free port; uvicorn serves on this very socket
        server = uvicorn.Server(uvicorn.Config(app, **options))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        servers.append((server, thread))
        host, port = sock.getsockname()[:2]
        return server, thread, host, port

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def _read_until_closed(sock: socket.socket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except TimeoutError:
        pass
    return out


@pytest.fixture
def read_all() -> Callable[[socket.socket, float], bytes]:
    """read_all(sock, seconds) -> what the server sends until it closes the connection (or `seconds` pass)."""
    return _read_until_closed


# ---- a tiny model artifact -----------------------------------------------------------------------------------
TINY_MODEL = {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}


@pytest.fixture
def tiny_artifact(tiny_prepared: PreparedDataset, tmp_path: Path) -> Path:
    """An untrained next-item LM artifact (max_seq_len 8, seed 0) over the tiny catalogue, in <tmp_path>/model;
    titles are "Item <id>"."""
    from llmrec.training import build_model, save_artifact

    model = build_model(tiny_prepared, TINY_MODEL, seed=0)[0].eval()
    return save_artifact(model, tiny_prepared, tmp_path / "model")
