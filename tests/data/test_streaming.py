"""Streaming preparation: the same prepared dataset as the in-memory path, on generated logs, partitioned
Parquet, CSV and bad input (errors that name the file and column, nothing half-written)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data import SPLITS, ColumnMap, PrepareConfig, PreparedDataset, prepare, read_files
from llmrec.data.streaming import prepare_streaming
from llmrec.errors import DataError

COLUMNS = ColumnMap(user="user_id", item="item_id", time="timestamp", event="event", value="rating")
# Manifest entries that must agree; "source" is compared where both read the same one file.
SAME = ("format", "domain", "prepare", "steps", "split", "stats")


def _events(rows: list[tuple[Any, ...]], *, int_ids: bool = False) -> pl.DataFrame:
    """user_id, item_id, timestamp, event, rating from (user, item, time[, event, rating]) rows, in file order."""
    full = [(*r, "click", 1.0)[:5] for r in rows]
    id_type = pl.Int64 if int_ids else pl.String
    schema = {"user_id": id_type, "item_id": id_type, "timestamp": pl.Int64, "event": pl.String, "rating": pl.Float64}
    return pl.DataFrame(full, schema=schema, orient="row")


def _in_memory(path: Path, fmt: str, config: PrepareConfig, out: Path, columns: ColumnMap = COLUMNS) -> PreparedDataset:
    raw, source = read_files(path, fmt, columns=columns)
    prepare(raw, config, source=source).save(out)
    return PreparedDataset.load(out)


def _assert_same(a: PreparedDataset, b: PreparedDataset, keys: tuple[str, ...] = SAME) -> None:
    assert a.users.equals(b.users), (a.users, b.users)
    assert a.items.equals(b.items), (a.items, b.items)
    assert len(a.sequences) == len(b.sequences)
    for x, y, tx, ty in zip(a.sequences, b.sequences, a.times, b.times, strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(tx, ty)
    for key in keys:
        assert a.manifest[key] == b.manifest[key], key
    assert b.manifest["engine"] == "streaming"


# ---- equality with prepare() on generated logs ------------------------------------------------------------------
_ids = st.sampled_from([["1", "2", "3", "10", "20"], ["a", "b", "B", "10", "9"], ["7", "07", "8"]])


@st.composite
def _logs(draw: st.DrawFn) -> tuple[list[tuple[Any, ...]], bool]:
    users, items = draw(_ids), draw(_ids)
    row = st.tuples(
        st.sampled_from(users),
        st.sampled_from(items),
        st.integers(0, 4),  # few distinct times: many ties and exact repeats
        st.sampled_from(["click", "buy"]),
        st.sampled_from([1.0, 3.0, 5.0]),
    )
    rows = draw(st.lists(row, min_size=1, max_size=60))
    canonical = {"1", "2", "3", "10", "20", "8"}
    int_ids = draw(st.booleans()) and all(r[0] in canonical and r[1] in canonical for r in rows)
    return rows, int_ids


_configs = st.builds(
    PrepareConfig,
    user_core=st.integers(0, 3),
    item_core=st.integers(0, 3),
    dedupe=st.booleans(),
    keep_events=st.sampled_from([(), ("buy",)]),
    min_value=st.sampled_from([None, 3.0]),
    split=st.sampled_from(SPLITS),
    cold_user_fraction=st.sampled_from([0.0, 0.5]),
    cold_item_fraction=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 3),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(log=_logs(), config=_configs, bucket_events=st.sampled_from([1, 7, 1000]))
def test_streaming_equals_in_memory(
    log: tuple[list[tuple[Any, ...]], bool], config: PrepareConfig, bucket_events: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    rows, int_ids = log
    tmp = tmp_path_factory.mktemp("eq")
    path = tmp / "events.parquet"
    _events(rows, int_ids=int_ids).write_parquet(path)
    try:
        expected = _in_memory(path, "parquet", config, tmp / "mem")
    except ValueError as e:  # nothing left after filtering: streaming must say the same
        with pytest.raises(ValueError, match=str(e)):
            prepare_streaming(path, "parquet", tmp / "stream", columns=COLUMNS, config=config)
        assert not (tmp / "stream").exists()
        return
    manifest = prepare_streaming(path, "parquet", tmp / "stream", columns=COLUMNS, config=config, bucket_events=bucket_events)
    got = PreparedDataset.load(tmp / "stream")
    _assert_same(expected, got, (*SAME, "source"))
    assert manifest == got.manifest
    assert sorted(p.name for p in (tmp / "stream").iterdir()) == [
        ".llmrec.json",  # the marker: llmrec wrote this folder
        "items.parquet",
        "manifest.json",
        "sequences.parquet",
        "users.parquet",
    ]


def test_streaming_literal_case(tmp_path: Path) -> None:
    # u1 repeats (1, t=5); a tie at t=5 keeps file order; u3 has one event and falls to the 2-core with item 4.
    rows = [("u1", "2", 5), ("u2", "1", 1), ("u1", "1", 5), ("u1", "2", 5), ("u2", "2", 3), ("u1", "1", 2), ("u3", "4", 9)]
    path = tmp_path / "e.parquet"
    _events(rows).write_parquet(path)
    prepare_streaming(path, "parquet", tmp_path / "out", columns=COLUMNS, config=PrepareConfig(user_core=2, item_core=2))
    ds = PreparedDataset.load(tmp_path / "out")
    assert ds.users["user"].to_list() == ["u1", "u2"] and ds.raw_item_ids() == ["1", "2"]
    assert [s.tolist() for s in ds.sequences] == [[1, 2, 1], [1, 2]]  # u1: 1@2, then 2@5 before 1@5 (file order)
    assert [t.tolist() for t in ds.times] == [[2, 5, 5], [1, 3]]
    assert [s["events"] for s in ds.manifest["steps"]] == [7, 6, 5]
    assert ds.users.select("n_train", "valid_pos", "test_pos").rows() == [(1, 1, 2), (1, -1, 1)]


# ---- partitioned Parquet, CSV -----------------------------------------------------------------------------------
def _log(n: int = 400, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "user_id": rng.integers(0, 40, n),
            "item_id": rng.integers(0, 30, n),
            "timestamp": rng.integers(0, 50, n),
            "event": rng.choice(["click", "buy"], n),
            "rating": rng.integers(1, 6, n).astype(float),
        }
    )


def test_streaming_reads_a_directory_of_parquet_files(tmp_path: Path) -> None:
    log = _log()
    parts = tmp_path / "events"
    for k, part in enumerate(log.iter_slices(150)):  # 150 + 150 + 100 rows, in nested partition folders
        (parts / f"day={k}").mkdir(parents=True)
        part.write_parquet(parts / f"day={k}" / "part-0.parquet")
    (parts / "_SUCCESS").write_text("")  # markers and hidden files are not data
    (parts / ".part-1.parquet.crc").write_text("")
    log.write_parquet(tmp_path / "all.parquet")
    config = PrepareConfig(user_core=5, item_core=5)
    expected = _in_memory(tmp_path / "all.parquet", "parquet", config, tmp_path / "mem")
    for source in (parts, str(parts / "day=*" / "*.parquet")):
        prepare_streaming(source, "parquet", tmp_path / "stream", columns=COLUMNS, config=config, bucket_events=100)
        got = PreparedDataset.load(tmp_path / "stream")
        _assert_same(expected, got)
        assert len(got.manifest["source"]["files"]) == 3


def test_streaming_reads_csv_and_tsv_with_text_ids(tmp_path: Path) -> None:
    log = _log(seed=1).with_columns(pl.format("user-{}", "user_id").alias("user_id"))
    config = PrepareConfig(user_core=3, item_core=3, keep_events=("click",), split="temporal")
    for fmt, sep in (("csv", ","), ("tsv", "\t")):
        path = tmp_path / f"events.{fmt}"
        log.write_csv(path, separator=sep)
        expected = _in_memory(path, fmt, config, tmp_path / f"mem-{fmt}")
        prepare_streaming(path, fmt, tmp_path / f"stream-{fmt}", columns=COLUMNS, config=config, bucket_events=50)
        _assert_same(expected, PreparedDataset.load(tmp_path / f"stream-{fmt}"), (*SAME, "source"))


def test_streaming_reads_iso_times_and_a_mapped_catalogue_like_in_memory(tmp_path: Path) -> None:
    import datetime as dt

    from llmrec.data import ItemColumnMap
    from llmrec.data.readers import IgnoredColumnWarning

    log = _log(seed=2).with_columns(
        (pl.lit(dt.datetime(2024, 3, 1)) + pl.duration(minutes=pl.col("timestamp"))).alias("timestamp")
    )  # a datetime column; as text below, ISO-8601 with a "T"
    skus = log["item_id"].unique().sort().cast(pl.String)
    catalogue = pl.DataFrame({"sku": skus, "name": "Item " + skus, "category": "x|" + skus, "price": [1.0] * len(skus)})
    catalogue.write_csv(tmp_path / "catalogue.csv")
    item_map = ItemColumnMap.parse("item=sku,title=name,categories=category")
    config = PrepareConfig(user_core=2)
    parquet, csv_path = tmp_path / "events.parquet", tmp_path / "events.csv"
    log.write_parquet(parquet)
    log.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S")).write_csv(csv_path)
    prepared = []
    for fmt, path in (("parquet", parquet), ("csv", csv_path)):
        with pytest.warns(IgnoredColumnWarning, match="'price'"):
            raw, source = read_files(path, fmt, columns=COLUMNS, items=tmp_path / "catalogue.csv", item_columns=item_map)
            expected = prepare(raw, config, source=source)
            expected.save(tmp_path / f"mem-{fmt}")
            prepare_streaming(
                path, fmt, tmp_path / f"stream-{fmt}", columns=COLUMNS, config=config, bucket_events=60,
                items=tmp_path / "catalogue.csv", item_columns=item_map,
            )  # fmt: skip
        got = PreparedDataset.load(tmp_path / f"stream-{fmt}")
        _assert_same(PreparedDataset.load(tmp_path / f"mem-{fmt}"), got)
        assert got.manifest["name"] == expected.manifest["name"] == "events"
        assert got.items["title"].null_count() == 0 and got.items["categories"].list.len().min() == 2
        prepared.append(got)
    for a, b in zip(prepared[0].times, prepared[1].times, strict=True):  # datetime column and ISO text agree
        np.testing.assert_array_equal(a, b)
    assert prepared[0].times[0][0] >= 1709251200  # Unix seconds from 2024-03-01 on


def test_streaming_without_time_column_uses_row_order_across_files(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    pl.DataFrame({"user_id": ["a", "b"], "item_id": ["1", "2"]}).write_parquet(tmp_path / "in" / "0.parquet")
    pl.DataFrame({"user_id": ["b", "a"], "item_id": ["3", "4"]}).write_parquet(tmp_path / "in" / "1.parquet")
    prepare_streaming(tmp_path / "in", "parquet", tmp_path / "out", columns=ColumnMap(time=None))
    ds = PreparedDataset.load(tmp_path / "out")
    assert [t.tolist() for t in ds.times] == [[0, 3], [1, 2]]
    assert [s.tolist() for s in ds.sequences] == [[1, 4], [2, 3]]


# ---- bad input: an error naming the file and column, nothing written --------------------------------------------
def _no_output(out: Path) -> None:
    assert not out.exists()
    assert not any(p.name.startswith(f".{out.name}") for p in out.parent.iterdir())  # no temporary folder left


def test_streaming_missing_column_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _log().write_parquet(tmp_path / "in" / "a.parquet")
    _log().drop("timestamp").write_parquet(tmp_path / "in" / "b.parquet")
    with pytest.raises(DataError, match="missing column 'timestamp'") as err:
        prepare_streaming(tmp_path / "in", "parquet", tmp_path / "out", columns=COLUMNS)
    assert err.value.path == str(tmp_path / "in" / "b.parquet")
    _no_output(tmp_path / "out")


def test_streaming_bad_cell_names_file_row_and_column(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _log(100).write_parquet(tmp_path / "in" / "a.parquet")
    bad = _log(100).with_columns(pl.when(pl.int_range(pl.len()) == 42).then(-5).otherwise("timestamp").alias("timestamp"))
    bad.write_parquet(tmp_path / "in" / "b.parquet")
    with pytest.raises(DataError, match="time value -5 is negative") as err:
        prepare_streaming(tmp_path / "in", "parquet", tmp_path / "out", columns=COLUMNS)
    assert (err.value.path, err.value.row, err.value.field) == (str(tmp_path / "in" / "b.parquet"), 42, "timestamp")
    _no_output(tmp_path / "out")

    csv = tmp_path / "e.csv"
    csv.write_text("user_id,item_id,timestamp\na,1,3\nb,,4\n")
    with pytest.raises(DataError, match="empty item id") as err:
        prepare_streaming(csv, "csv", tmp_path / "out", columns=ColumnMap())
    assert (err.value.path, err.value.line, err.value.field) == (str(csv), 3, "item_id")
    _no_output(tmp_path / "out")


def test_streaming_failure_keeps_the_previous_dataset(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    _log().write_parquet(path)
    prepare_streaming(path, "parquet", tmp_path / "out", columns=COLUMNS)
    before = (tmp_path / "out" / "manifest.json").read_text()
    with pytest.raises(ValueError, match="no events left"):  # fails after the output folder was started
        prepare_streaming(path, "parquet", tmp_path / "out", columns=COLUMNS, config=PrepareConfig(user_core=10_000))
    assert (tmp_path / "out" / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.parquet", "out"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no parquet files"):
        prepare_streaming(tmp_path / "empty", "parquet", tmp_path / "x", columns=COLUMNS)


# ---- the command line -------------------------------------------------------------------------------------------
def test_cli_streams_a_directory_and_refuses_it_in_memory(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _log().write_parquet(tmp_path / "in" / "0.parquet")
    args = ["data", "prepare", "--events", str(tmp_path / "in"), "--format", "parquet", "--k-core", "2"]
    args += ["--columns", "user=user_id,item=item_id,time=timestamp"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "streaming" in result.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["engine"] == "streaming" and manifest["stats"]["users"] == PreparedDataset.load(tmp_path / "out").n_users

    refused = CliRunner().invoke(app, [*args, "--in-memory", "--out", str(tmp_path / "out2")])
    assert refused.exit_code == 2 and "reads one file" in refused.stderr
    refused = CliRunner().invoke(app, ["data", "prepare", "--dataset", "beauty", "--streaming", "--out", str(tmp_path / "o")])
    assert refused.exit_code == 2 and "--streaming goes with --events" in refused.stderr


def test_streaming_malformed_csv_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("user_id,item_id,timestamp\na,1,3\n")
    (tmp_path / "in" / "b.csv").write_text("user_id,item_id,timestamp\na,2,4\nb,3,5,7,8\n")
    with pytest.raises(DataError, match="expected 3 fields like the header, found 5") as err:
        prepare_streaming(tmp_path / "in", "csv", tmp_path / "out", columns=ColumnMap())
    assert (err.value.path, err.value.line) == (str(tmp_path / "in" / "b.csv"), 3)
    _no_output(tmp_path / "out")


def _both_engines(path: Path, fmt: str, out: Path) -> list[DataError]:
    """The DataError each engine raises on `path` (in memory, then streaming)."""
    errors = []
    for engine in ("in-memory", "streaming"):
        with pytest.raises(DataError) as err:
            if engine == "in-memory":
                read_files(path, fmt, columns=ColumnMap())
            else:
                prepare_streaming(path, fmt, out, columns=ColumnMap())
        errors.append(err.value)
    _no_output(out)
    return errors


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_a_short_row_gives_the_same_message_from_both_engines(fmt: str, tmp_path: Path) -> None:
    sep = "," if fmt == "csv" else "\t"
    path = tmp_path / f"e.{fmt}"
    path.write_text(
        "\n".join(sep.join(r) for r in [["user_id", "item_id", "timestamp"], ["a", "1", "3"], ["a", "2"], ["b", "3", "5"]]) + "\n"
    )
    for e in _both_engines(path, fmt, tmp_path / "out"):
        assert (str(e), e.line) == (f"{path}, line 3: expected 3 fields like the header, found 2", 3)


@pytest.mark.parametrize(
    ("fmt", "time"),
    [("csv", str(2**70)), ("csv", "1e30"), ("parquet", 2**64 - 1), ("parquet", 1e30)],
    ids=["csv-int", "csv-float", "parquet-uint64", "parquet-float"],
)
def test_a_time_beyond_int64_is_out_of_range_in_both_engines(fmt: str, time: object, tmp_path: Path) -> None:
    path = tmp_path / f"e.{fmt}"
    if fmt == "csv":
        path.write_text(f"user_id,item_id,timestamp\na,1,3\na,2,{time}\nb,3,5\n")
    else:
        dtype = pl.UInt64 if isinstance(time, int) else pl.Float64
        pl.DataFrame(
            {"user_id": ["a", "a", "b"], "item_id": ["1", "2", "3"], "timestamp": pl.Series([3, time, 5], dtype=dtype)}
        ).write_parquet(path)
    for e in _both_engines(path, fmt, tmp_path / "out"):
        assert "is out of range" in str(e) and "not a number" not in str(e) and e.field == "timestamp", str(e)
        assert (e.line, e.row) == ((3, None) if fmt == "csv" else (None, 1))
