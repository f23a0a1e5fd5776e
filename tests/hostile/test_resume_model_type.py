"""`--resume` with another model type names the model type (issue 28 point 6: three differing settings were
listed, never the model type), and the finished artifact is left as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from typer.testing import CliRunner, Result

from llmrec.cli import app

TINY = ["--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "model.d_ff=32", "--set", "model.max_seq_len=8"]
QUICK = ["--set", "train.epochs=1", "--set", "train.refit_on_valid=false", "--set", "train.progress=false"]


def test_resume_with_another_model_type_names_it(tmp_path: Path) -> None:
    from llmrec.data import PrepareConfig, RawData, prepare

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", str(i), 1000 + t) for u in range(20) for t, i in enumerate(rng.choice(30, size=8, replace=False))]
    events = pl.DataFrame(rows, schema={"user": pl.String, "item": pl.String, "time": pl.Int64}, orient="row")
    raw = RawData(events=events, items=None, users=None, domain="generic", source_files=[])
    prepare(raw, PrepareConfig()).save(tmp_path / "data")
    runner = CliRunner()

    def train(model: str, *extra: str) -> Result:
        args = ["train", "--dataset", str(tmp_path / "data"), "--out", str(tmp_path / "m"), "--model", model]
        return runner.invoke(app, [*args, *TINY, *QUICK, *extra])

    first = train("tvrec")
    assert first.exit_code == 0, first.output
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    result = train("next-item-lm", "--resume")
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert line.startswith("error: --resume: checkpoint was trained with model_type tvrec, --model asks next-item-lm")
    assert "settings that differ too: " in line and "pos_encoding none (asks learned)" in line
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
