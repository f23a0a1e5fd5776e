"""Every setting is checked before work starts: a bad value is one ``error: ...`` line naming its key, exit code 2,
nothing written; a run that would not fit in memory is refused the same way unless ``--force`` is given."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from llmrec.cli import app
from llmrec.data import PreparedDataset

runner = CliRunner()
TINY = ["--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "model.d_ff=32", "--set", "model.max_seq_len=8"]


def _invoke(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def _refused(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert "Traceback" not in result.output


@pytest.fixture
def data(tiny_prepared: PreparedDataset, tmp_path: Path) -> Path:
    return tiny_prepared.save(tmp_path / "data")


# ---- D6 / D7 and the other [model] / [train] ranges through `llmrec train` -----------------------------------------
@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("model.max_seq_len=0", "model.max_seq_len: must be between 1 and 16384, got 0"),  # D6: used to hang
        ("model.max_seq_len=1000000000", "model.max_seq_len: must be between 1 and 16384, got 1000000000"),  # D7
        ("model.max_seq_len=-3", "model.max_seq_len: must be between 1 and 16384, got -3"),  # D7
        ("model.dropout=1.5", "model.dropout: must be in [0, 1), got 1.5"),
        ("model.d_model=0", "model.d_model: must be between 1 and 16384, got 0"),
        ("model.n_layers=-1", "model.n_layers: must be between 1 and 256"),
        ("train.lr=inf", "train.lr: must be > 0 and finite, got inf"),
        ("train.lr=nan", "train.lr: must be > 0 and finite, got nan"),
        ("train.lr=0", "train.lr: must be > 0, got 0.0"),
        ("train.weight_decay=-0.1", "train.weight_decay: must be >= 0, got -0.1"),
        ("train.batch_size=0", "train.batch_size: must be between 1 and 1048576, got 0"),
        ("train.epochs=0", "train.epochs: must be between 1 and 100000, got 0"),
        ("train.patience=0", "train.patience: must be between 1 and 100000, got 0"),
        ("train.max_minutes=-1", "train.max_minutes: must be >= 0, got -1.0"),
    ],
)
def test_train_refuses_an_out_of_range_setting_before_any_work(setting: str, named: str, data: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    started = time.perf_counter()
    result = _invoke("train", "--dataset", data, "--out", tmp_path / "m", *TINY, "--set", setting)
    _refused(result, named)
    assert time.perf_counter() - started < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no model folder, no .m.train, nothing


def test_a_registry_name_is_not_prepared_for_a_refused_setting(tmp_path: Path) -> None:
    result = _invoke("train", "--dataset", "beauty", "--out", tmp_path / "m", "--set", "model.max_seq_len=0")
    _refused(result, "model.max_seq_len")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("model", "setting", "named"),
    [
        ("bsarec", "model.alpha=2.0", "model.alpha: must be in [0, 1], got 2.0"),
        ("t5-semantic", "model.num_beams=0", "model.num_beams: must be between 1 and 4096, got 0"),
        ("t5-semantic", "model.max_seq_len=0", "model.max_seq_len: must be between 1"),
        ("item-knn", "model.neighbours=0", "model.neighbours: must be between 1 and 1048576, got 0"),
        ("item-knn", "model.decay=0", "model.decay: must be in (0, 1], got 0"),
        ("item-knn", "model.max_seq_len=0", "model.max_seq_len: must be between 1 and 16384, got 0"),
    ],
)
def test_every_recipe_checks_its_ranges(model: str, setting: str, named: str, data: Path, tmp_path: Path) -> None:
    _refused(_invoke("train", "--dataset", data, "--out", tmp_path / "m", "--model", model, "--set", setting), named)
    assert not (tmp_path / "m").exists()


def test_the_python_api_refuses_before_writing(data: Path, tmp_path: Path) -> None:
    import llmrec

    with pytest.raises(ValueError, match=r"model\.max_seq_len: must be between 1 and 16384, got 0"):
        llmrec.train(data, tmp_path / "m", max_seq_len=0)
    assert not (tmp_path / "m").exists()


def test_config_constructors_name_the_field() -> None:
    from llmrec.models.next_item_lm import NextItemLMConfig
    from llmrec.training import TrainConfig

    with pytest.raises(ValueError, match=r"^max_seq_len: must be between 1 and 16384, got 0$"):
        NextItemLMConfig(n_items=5, max_seq_len=0)
    with pytest.raises(ValueError, match=r"^lr: must be > 0 and finite, got inf$"):
        TrainConfig(lr=math.inf)
    with pytest.raises(ValueError, match=r"^ema_decay: must be in \[0, 1\), got 1.0$"):
        TrainConfig(ema_decay=1.0)
    NextItemLMConfig(n_items=5, max_seq_len=16384, dropout=0.0)  # the bounds themselves are allowed


def test_training_windows_refuse_a_non_positive_length() -> None:
    import numpy as np

    from llmrec.data.sequences import prefix_examples, training_windows

    for make in (training_windows, prefix_examples):
        with pytest.raises(ValueError, match="max_seq_len must be >= 1, got 0"):
            make([np.arange(1, 10)], 0)


# ---- tune and serve ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--trials", "0"], "--trials: must be between 1 and 100000, got 0"),
        (["--budget-minutes", "0"], "--budget-minutes: must be > 0, got 0.0"),
        (["--set", "model.max_seq_len=0"], "model.max_seq_len: must be between 1"),
    ],
)
def test_tune_refuses_bad_options(args: list[str], named: str, data: Path, tmp_path: Path) -> None:
    _refused(_invoke("tune", "--dataset", data, "--out", tmp_path / "best.toml", *args), named)
    assert not (tmp_path / "best.toml").exists()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--max-body-bytes", "-1"], "--max-body-bytes: must be between 1 and"),
        (["--max-body-bytes", "0"], "--max-body-bytes: must be between 1 and"),
        (["--port", "70000"], "--port: must be between 0 and 65535, got 70000"),
        (["--port", "-1"], "--port: must be between 0 and 65535, got -1"),
        (["--max-batch", "0"], "--max-batch: must be between 1 and"),
        (["--max-wait-ms", "-1"], "--max-wait-ms: must be in [0, 60000], got -1.0"),
    ],
)
def test_serve_refuses_bad_limits(args: list[str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("uvicorn started"))
    _refused(_invoke("serve", "--model", tmp_path, *args), named)


# ---- the memory check ----------------------------------------------------------------------------------------------
def _no_memory(monkeypatch: pytest.MonkeyPatch, available: int = 1 << 20) -> None:
    from llmrec.training import memory

    monkeypatch.setattr(memory, "available_memory", lambda: available)


def test_a_run_that_does_not_fit_is_refused_and_force_trains_it(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_memory(monkeypatch)
    args = ["train", "--dataset", data, "--out", tmp_path / "m", *TINY, "--set", "train.epochs=1"]
    _refused(_invoke(*args), "this run needs about", "of memory (estimated peak) but 1 MiB is available", "--force")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    forced = _invoke(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_tune_checks_memory_too(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_memory(monkeypatch)
    _refused(_invoke("tune", "--dataset", data, "--out", tmp_path / "best.toml", "--trials", "1"), "this run needs about")


def test_the_default_beauty_run_is_estimated_well_under_two_gib() -> None:
    """beauty: 12,101 items, ~22k users, ~198k training events; the default run's peak RSS is ~1.4 GiB, of which
    the interpreter, torch and the dataset tables (not counted by the estimate) are several hundred MiB."""
    from llmrec.models.next_item_lm import NextItemLMConfig
    from llmrec.training import TrainConfig
    from llmrec.training.memory import estimate_training_memory

    est = estimate_training_memory(NextItemLMConfig(n_items=12_101), TrainConfig(), n_examples=22_400, n_tokens=198_000)
    assert 200 * 2**20 < est.total < 1.5 * 2**30, est
    huge = estimate_training_memory(
        NextItemLMConfig(n_items=12_101, max_seq_len=16384), TrainConfig(), n_examples=22_400, n_tokens=198_000
    )
    assert huge.total > 100 * 2**30  # D7 within the range: refused by the memory check on any ordinary machine


_MEASURE = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
import numpy as np, polars as pl
from llmrec.data import PrepareConfig, RawData, prepare
from llmrec.models.next_item_lm import NextItemLMConfig
from llmrec.training import TrainConfig
from llmrec.training.fit import fit
from llmrec.training.memory import estimate_lm_run

rng = np.random.default_rng(0)
n_users, n_items, length = 96, 8000, 40
rows = [(f"u{u}", str(int(i)), t) for u in range(n_users) for t, i in enumerate(rng.integers(1, n_items + 1, length))]
rows += [("z", str(i), i) for i in range(1, n_items + 1)]  # every item occurs
events = pl.DataFrame(rows, schema={"user": pl.String, "item": pl.String, "time": pl.Int64}, orient="row")
events = events.with_columns(pl.lit(1.0).alias("value"))
ds = prepare(RawData(events=events, items=None, users=None, domain="generic", source_files=[]), PrepareConfig(split="loo"))
params = {"d_model": 64, "n_layers": 2, "d_ff": 256, "max_seq_len": 32, "use_attributes": False}
cfg = TrainConfig(epochs=1, batch_size=64, progress=False, refit_on_valid=False)
est = estimate_lm_run(ds, params, cfg, device="cpu")
# The peak counter (VmHWM) is reset first: a child started from a large process (a long pytest session) inherits
# that process's high-water mark across exec, which ru_maxrss would report as this run's peak.
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    def peak_rss():
        status = open("/proc/self/status").read()
        return int(status.split("VmHWM:")[1].split()[0]) * 1024
except OSError:
    def peak_rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
rss_before = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
fit(ds, {k: v for k, v in params.items() if k != "use_attributes"}, cfg)
peak = peak_rss()
print(json.dumps({"estimate": est.total, "added": peak - rss_before}))
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc")
def test_the_estimate_is_within_a_factor_of_a_measured_peak(tmp_path: Path) -> None:
    """One small run in a fresh interpreter: the memory its training added to the process (peak RSS minus RSS
    before) against the estimate, loosely (the estimate is an upper bound; the allocator keeps slack)."""
    env: dict[str, Any] = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "LLMREC_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _MEASURE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["added"] / 2 < m["estimate"] < m["added"] * 2, m
