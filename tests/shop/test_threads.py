"""`--threads` on every command that computes (one shared option), and the right name suggested in Python."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmrec.cli import app

runner = CliRunner()
COMPUTING = [
    "train",
    "evaluate",
    "meta-train",
    "map-cold-items",
    "recommend",
    "explain",
    "export",
    "tune",
    "build-index",
    "serve",
]


@pytest.mark.parametrize("command", [*COMPUTING, "data prepare"])
def test_every_computing_command_takes_threads(command: str) -> None:
    r = runner.invoke(app, [*command.split(), "--help"])
    assert r.exit_code == 0 and "--threads" in r.output


def test_threads_is_applied_and_checked(shop_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    seen: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    ok = runner.invoke(app, ["recommend", "--model", str(shop_artifact), "--user", "u01", "-k", "3", "--threads", "2"])
    assert ok.exit_code == 0, ok.output
    assert seen == [2]
    bad = runner.invoke(app, ["explain", "--model", str(shop_artifact), "--user", "u01", "--threads", "-1"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --threads must be in 0..4096")


def test_a_misplaced_threads_key_names_the_right_one() -> None:
    from llmrec.experiment import check_settings

    with pytest.raises(ValueError, match=r"model\.threads: did you mean train\.num_threads \(threads= in llmrec\.train"):
        check_settings("tvrec", {"model": {"threads": 1}})
    with pytest.raises(ValueError, match=r"did you mean model\.dropout"):
        check_settings("tvrec", {"model": {"dropuot": 0.1}})
    with pytest.raises(ValueError, match=r"did you mean train\.lr"):
        check_settings("tvrec", {"train": {"learning_rate": 1e-3}})


def test_recommender_load_takes_threads(shop_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Recommender.load(path, threads=2)` sets the scoring threads as `--threads` does; a bad count is refused."""
    import torch

    from llmrec import Recommender

    seen: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    rec = Recommender.load(shop_artifact, threads=2)
    assert seen == [2] and len(rec.recommend(user="u01", k=3)) == 3
    Recommender.load(shop_artifact)  # 0, the default, leaves them
    assert seen == [2]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match=r"threads must be in 0\.\.4096"):
            Recommender.load(shop_artifact, threads=bad)  # type: ignore[arg-type]
