"""The small ones: registry datasets found without LLMREC_DATA_MIRROR when a shared/datasets folder is near, event
times as ISO-8601 UTC in `data stats`, `map-cold-items` and `stats` counting the same items."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data import PreparedDataset

runner = CliRunner()


def test_data_list_finds_a_shared_datasets_folder_without_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmrec.data.registry import mirror_dir

    real = Path(os.environ["LLMREC_DATA_MIRROR"])
    if not (real / "ml-100k").is_dir():
        pytest.skip("needs the shared ml-100k files")
    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    (tmp_path / "shared" / "datasets" / "ml-100k").symlink_to(real / "ml-100k")
    work = tmp_path / "notebooks"  # a folder beside shared/: ../shared/datasets is found
    work.mkdir()
    monkeypatch.delenv("LLMREC_DATA_MIRROR")
    monkeypatch.chdir(work)
    assert mirror_dir() == Path.cwd().parent / "shared" / "datasets"
    r = runner.invoke(app, ["data", "list"])
    assert r.exit_code == 0, r.output
    row = next(line for line in r.stdout.splitlines() if "ml-100k" in line)
    assert "mirror" in row and "not found" not in row
    assert f"mirror: {tmp_path / 'shared' / 'datasets'}" in r.stdout.replace("\n", "")


def test_data_stats_prints_event_times_as_iso_utc(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    import polars as pl

    from llmrec.data import PrepareConfig, RawData, prepare

    events = pl.DataFrame(
        {"user": ["a", "a", "b", "b"], "item": ["1", "2", "1", "2"], "time": [874_965_758, 874_965_800, 893_286_638, 893_286_700]}
    )
    ds = prepare(RawData(events, None, None, "generic", []), PrepareConfig(split="loo"))
    out = ds.save(tmp_path / "d")
    r = runner.invoke(app, ["data", "stats", str(out)])
    assert r.exit_code == 0, r.output
    assert "1997-09-22T22:02:38Z (874965758)" in r.stdout and "1998-04-22T23:11:40Z (893286700)" in r.stdout
    as_json = json.loads(runner.invoke(app, ["data", "stats", str(out), "--json"]).stdout)
    assert (as_json["time_range"]["first_utc"], as_json["time_range"]["last_utc"]) == (
        "1997-09-22T22:02:38Z",
        "1998-04-22T23:11:40Z",
    )
    tiny = runner.invoke(app, ["data", "stats", str(tiny_prepared.save(tmp_path / "tiny"))])
    assert "(not a date: the events' own time unit)" in tiny.stdout  # small numbers are not made into 1970 dates


def test_stats_counts_the_items_map_cold_items_maps(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    from llmrec.models.cold_items import untrained_items

    out = tiny_prepared.save(tmp_path / "tiny")
    stats = json.loads(runner.invoke(app, ["data", "stats", str(out), "--json"]).stdout)
    assert stats["untrained_items"] == len(untrained_items(tiny_prepared, refit=False))
    table = runner.invoke(app, ["data", "stats", str(out)]).stdout
    assert "cold items (held out by the split)" in table and "items in no training event" in table
