"""Raw data readers: tiny literal files in, literal frames out; every kind of bad input names file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from llmrec.data.readers import (
    CATALOGUE_SCHEMA,
    ColumnMap,
    IgnoredColumnWarning,
    ItemColumnMap,
    infer_format,
    read_catalogue,
    read_mind,
    read_movielens,
    read_recbole,
    read_s3rec,
    read_table,
)
from llmrec.errors import DataError

MIRROR = Path(os.environ.get("LLMREC_DATA_MIRROR", Path(__file__).resolve().parents[3] / "shared" / "datasets"))


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# ---- ColumnMap ---------------------------------------------------------------------------------------------


def test_column_map_parse_reads_every_key() -> None:
    spec = "user=uid, item=sku,time=ts,event=type,value=rating"
    assert ColumnMap.parse(spec) == ColumnMap(user="uid", item="sku", time="ts", event="type", value="rating")


def test_column_map_parse_keeps_defaults_and_empty_time_means_none() -> None:
    assert ColumnMap.parse("item=sku,time=") == ColumnMap(item="sku", time=None)


def test_column_map_parse_rejects_unknown_key() -> None:
    with pytest.raises(ValueError, match="'itme'"):
        ColumnMap.parse("user=u,itme=i")


# ---- S3-Rec ------------------------------------------------------------------------------------------------


def test_read_s3rec_uses_positions_as_times_and_attributes_as_categories(tmp_path: Path) -> None:
    log = _write(tmp_path / "Toy.txt", "1 5 7 5\n2 7\n\n")
    attrs = _write(tmp_path / "Toy_item2attributes.json", json.dumps({"5": [12, 3, 12], "7": []}))
    raw = read_s3rec(log, attrs, domain="music")
    assert raw.events.schema == pl.Schema({"user": pl.String, "item": pl.String, "time": pl.Int64})
    assert raw.events.rows() == [("1", "5", 0), ("1", "7", 1), ("1", "5", 2), ("2", "7", 0)]
    assert raw.items is not None
    assert raw.items.schema == pl.Schema(CATALOGUE_SCHEMA)
    assert raw.items.rows() == [("5", None, None, ["attr_12", "attr_3"]), ("7", None, None, [])]
    assert (raw.users, raw.domain, raw.source_files) == (None, "music", [log, attrs])


def test_read_s3rec_rejects_non_integer_id_with_line(tmp_path: Path) -> None:
    log = _write(tmp_path / "Toy.txt", "1 5 7\n2 7 x9\n")
    with pytest.raises(DataError, match="'x9' is not a non-negative integer") as info:
        read_s3rec(log)
    assert (info.value.path, info.value.line) == (str(log), 2)


def test_read_s3rec_rejects_user_without_items(tmp_path: Path) -> None:
    log = _write(tmp_path / "Toy.txt", "1 5 7\n\n3\n")
    with pytest.raises(DataError, match="at least one item") as info:
        read_s3rec(log)
    assert info.value.line == 3


def test_read_s3rec_reads_titles_csv_beside_attributes(tmp_path: Path) -> None:
    log = _write(tmp_path / "Toy.txt", "1 5 7\n2 7 9\n")
    attrs = _write(tmp_path / "Toy_item2attributes.json", json.dumps({"5": [12], "7": [3]}))
    titles = _write(tmp_path / "Toy_items.csv", 'item_id,asin,title\n5,B01,"Nail Lacquer, Red"\n7,B02,\n9,B03,Soap\n')
    raw = read_s3rec(log, attrs, titles_path=titles)
    assert raw.items is not None
    assert raw.items.rows() == [
        ("5", "Nail Lacquer, Red", None, ["attr_12"]),  # a quoted comma stays in the title
        ("7", None, None, ["attr_3"]),  # an empty title stays missing
        ("9", "Soap", None, []),  # titled but without attributes
    ]
    assert raw.source_files == [log, attrs, titles]


@pytest.mark.parametrize(
    ("body", "message", "line"),
    [
        ("item_id,asin,title\n5,B01,A\n5,B02,B\n", "listed twice", 3),
        ("item_id,asin,title\nx5,B01,A\n", "positive integer", 2),
        ("item,asin,name\n5,B01,A\n", "missing item_id, title", None),
    ],
)
def test_read_s3rec_titles_errors_name_file_and_line(tmp_path: Path, body: str, message: str, line: int | None) -> None:
    log = _write(tmp_path / "Toy.txt", "1 5 7\n")
    titles = _write(tmp_path / "Toy_items.csv", body)
    with pytest.raises(DataError, match=message) as info:
        read_s3rec(log, titles_path=titles)
    assert (info.value.path, info.value.line) == (str(titles), line)


def test_read_s3rec_beauty_mirror_titles() -> None:
    folder = MIRROR / "beauty"
    if not (folder / "Beauty_items.csv").is_file():
        pytest.skip(f"no beauty titles at {folder}")
    raw = read_s3rec(folder / "Beauty.txt", folder / "Beauty_item2attributes.json", titles_path=folder / "Beauty_items.csv")
    assert raw.items is not None and raw.items.height == 12101
    assert raw.items["title"].null_count() == 7  # the source's 7 empty titles
    first = raw.items.filter(pl.col("item") == "1")["title"].item()
    assert first == "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce"


def test_read_s3rec_lastfm_mirror_counts() -> None:
    folder = MIRROR / "lastfm"
    if not folder.is_dir():
        pytest.skip(f"no lastfm mirror at {folder}")
    raw = read_s3rec(folder / "LastFM.txt", folder / "LastFM_item2attributes.json", domain="music")
    assert raw.events["user"].n_unique() == 1090
    assert raw.events["item"].n_unique() == 3646
    assert raw.events.height == 52551
    assert raw.items is not None and raw.items.height == 3646


# ---- MovieLens ---------------------------------------------------------------------------------------------

GENRES_20 = ["Animation", "Children's", "Comedy"]
ML100K_ITEMS = (
    "10|Caf\xe9 Society (1995)|01-Jan-1995||http://x|0|0|0|0|0|1|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
    "20|Toy Story (1995)|01-Jan-1995||http://y|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "30|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
)


def _ml100k(folder: Path) -> Path:
    folder.mkdir()
    _write(folder / "u.data", "1\t10\t4\t881250949\n2\t20\t3\t891717742\n1\t20\t5\t878887116\n")
    _write(folder / "u.item", ML100K_ITEMS.encode("latin-1"))  # ISO-8859-1 as in older copies
    _write(folder / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    return folder


def test_read_movielens_ml100k_reads_ratings_titles_genres_and_users(tmp_path: Path) -> None:
    raw = read_movielens(_ml100k(tmp_path / "ml-100k"))
    assert raw.events.schema["value"] == pl.Float64
    assert raw.events.rows() == [
        ("1", "10", 881250949, 4.0),
        ("2", "20", 891717742, 3.0),
        ("1", "20", 878887116, 5.0),
    ]
    assert raw.items is not None and raw.users is not None
    assert raw.items.rows() == [
        ("10", "Café Society (1995)", "Café Society (1995). Genres: Comedy, Drama.", ["Comedy", "Drama"]),
        ("20", "Toy Story (1995)", "Toy Story (1995). Genres: Animation, Children's, Comedy.", GENRES_20),
        ("30", "unknown", "unknown. Genres: unknown.", ["unknown"]),
    ]
    assert raw.users.columns == ["user", "age", "gender", "occupation", "zip"]
    assert raw.users.rows() == [("1", "24", "M", "technician", "85711"), ("2", "53", "F", "other", "94043")]
    assert raw.domain == "movies"
    assert [p.name for p in raw.source_files] == ["u.data", "u.item", "u.user"]


def test_read_movielens_ml1m_reads_dat_files(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    _write(folder / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    movies = "1193::Am\xe9lie (2001)::Comedy|Romance\n661::Peach (1996)::Animation|Musical\n"
    _write(folder / "movies.dat", movies.encode("latin-1"))
    _write(folder / "users.dat", "1::F::1::10::48067\n")
    raw = read_movielens(folder)
    assert raw.events.rows() == [("1", "1193", 978300760, 5.0), ("1", "661", 978302109, 3.0)]
    assert raw.items is not None and raw.users is not None
    assert raw.items.rows() == [
        ("1193", "Amélie (2001)", "Amélie (2001). Genres: Comedy, Romance.", ["Comedy", "Romance"]),
        ("661", "Peach (1996)", "Peach (1996). Genres: Animation, Musical.", ["Animation", "Musical"]),
    ]
    assert raw.users.rows() == [("1", "1", "F", "K-12 student", "48067")]


def test_read_movielens_rejects_short_line_with_line(tmp_path: Path) -> None:
    folder = _ml100k(tmp_path / "ml-100k")
    _write(folder / "u.data", "1\t10\t4\t881250949\n2\t20\t3\n")
    with pytest.raises(DataError, match="expected 4 fields") as info:
        read_movielens(folder)
    assert (info.value.path, info.value.line) == (str(folder / "u.data"), 2)


def test_read_movielens_rejects_non_integer_id_with_line(tmp_path: Path) -> None:
    folder = _ml100k(tmp_path / "ml-100k")
    _write(folder / "u.data", "1\t10\t4\t881250949\n\n2\tabc\t3\t891717742\n")
    with pytest.raises(DataError, match="item id 'abc'") as info:
        read_movielens(folder)
    assert info.value.line == 3


def test_read_movielens_ml100k_mirror_counts() -> None:
    folder = MIRROR / "ml-100k"
    if not folder.is_dir():
        pytest.skip(f"no ml-100k mirror at {folder}")
    raw = read_movielens(folder)
    assert raw.events.height == 100_000
    assert raw.events["user"].n_unique() == 943
    assert raw.events["item"].n_unique() == 1682
    assert raw.items is not None and raw.items.height == 1682
    assert raw.users is not None and raw.users.height == 943
    assert raw.items.row(0) == (
        "1",
        "Toy Story (1995)",
        "Toy Story (1995). Genres: Animation, Children's, Comedy.",
        ["Animation", "Children's", "Comedy"],
    )


# ---- MIND --------------------------------------------------------------------------------------------------


def _mind(folder: Path) -> Path:
    folder.mkdir()
    behaviors = [
        ["1", "U1", "11/11/2019 9:05:58 AM", "N1 N2", "N3-1 N4-0"],
        ["2", "U2", "11/12/2019 1:00:00 PM", "", "N4-1 N3-1"],
        ["3", "U1", "11/11/2019 8:00:00 AM", "N1 N2", "N5-1 N3-0"],
        ["4", "U1", "11/11/2019 9:05:58 AM", "N1 N2", "N3-1"],
    ]
    news = [
        ["N1", "sports", "football", "Big win", "The home team won.", "https://x", "[]", "[]"],
        ["N2", "news", "politics", "Vote today", "", "https://y", "[]", "[]"],
    ]
    _write(folder / "behaviors.tsv", "".join("\t".join(r) + "\n" for r in behaviors))
    _write(folder / "news.tsv", "".join("\t".join(r) + "\n" for r in news))
    return folder


def test_read_mind_puts_history_before_earliest_impression_then_clicks(tmp_path: Path) -> None:
    raw = read_mind(_mind(tmp_path / "mind"))
    # U1's earliest impression is 2019-11-11 08:00:00 UTC = 1573459200; its 2-item history sits just before.
    assert raw.events.rows() == [
        ("U1", "N1", 1573459198),
        ("U1", "N2", 1573459199),
        ("U1", "N3", 1573463158),  # clicked twice at 9:05:58 AM: kept once
        ("U1", "N5", 1573459200),
        ("U2", "N4", 1573563600),
        ("U2", "N3", 1573563600),
    ]
    assert raw.items is not None
    assert raw.items.rows() == [
        ("N1", "Big win", "Big win. The home team won.", ["sports", "football"]),
        ("N2", "Vote today", "Vote today", ["news", "politics"]),
    ]
    assert raw.domain == "news"


def test_read_mind_rejects_unreadable_time_with_line(tmp_path: Path) -> None:
    folder = _mind(tmp_path / "mind")
    _write(folder / "behaviors.tsv", "1\tU1\t11/11/2019 9:05:58 AM\t\tN3-1\n2\tU1\t2019-11-11 09:05\t\tN3-1\n")
    with pytest.raises(DataError, match="'2019-11-11 09:05'") as info:
        read_mind(folder)
    assert (info.value.path, info.value.line) == (str(folder / "behaviors.tsv"), 2)


# ---- generic tables ----------------------------------------------------------------------------------------

TABLE = {"uid": ["a", "b", "a"], "sku": ["x", "y", "y"], "ts": ["10", "12.9", "11"], "kind": ["view", "buy", "view"]}
EXPECTED = [("a", "x", 10, "view"), ("b", "y", 12, "buy"), ("a", "y", 11, "view")]
COLUMNS = ColumnMap(user="uid", item="sku", time="ts", event="kind")


def _write_table(path: Path, fmt: str, table: dict[str, list[str]]) -> Path:
    df = pl.DataFrame(table)
    if fmt == "parquet":
        df.write_parquet(path)
    elif fmt == "jsonl":
        df.write_ndjson(path)
    else:
        df.write_csv(path, separator="\t" if fmt == "tsv" else ",")
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl"])
def test_read_table_reads_every_format(tmp_path: Path, fmt: str) -> None:
    path = _write_table(tmp_path / f"events.{fmt}", fmt, TABLE)
    raw = read_table(path, fmt, COLUMNS)
    assert raw.events.schema == pl.Schema({"user": pl.String, "item": pl.String, "time": pl.Int64, "event": pl.String})
    assert raw.events.rows() == EXPECTED
    assert (raw.items, raw.users, raw.domain, raw.source_files) == (None, None, "generic", [path])


def test_read_table_parquet_keeps_numeric_columns(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pl.DataFrame({"user_id": [7, 8], "item_id": [1, 2], "timestamp": [5.5, 3.0], "r": [4, 5]}).write_parquet(path)
    raw = read_table(path, "parquet", ColumnMap(value="r"))
    assert raw.events.rows() == [("7", "1", 5, 4.0), ("8", "2", 3, 5.0)]


def test_read_table_without_time_uses_row_order(tmp_path: Path) -> None:
    path = _write(tmp_path / "events.csv", 'user_id,item_id,rating\nu1,"i,1",4.5\nu2,i2,\n')
    raw = read_table(path, "csv", ColumnMap(time=None, value="rating"))
    assert raw.events.rows() == [("u1", "i,1", 0, 4.5), ("u2", "i2", 1, None)]


def _bad(path: Path, fmt: str) -> DataError:
    with pytest.raises(DataError) as info:
        read_table(path, fmt)
    assert info.value.path == str(path)
    return info.value


def test_read_table_rejects_empty_file(tmp_path: Path) -> None:
    err = _bad(_write(tmp_path / "e.csv", ""), "csv")
    assert "file is empty" in err.reason and err.line is None


def test_read_table_rejects_header_without_rows(tmp_path: Path) -> None:
    assert "no rows" in _bad(_write(tmp_path / "e.csv", "user_id,item_id,timestamp\n"), "csv").reason


def test_read_table_rejects_missing_column_naming_found_ones(tmp_path: Path) -> None:
    err = _bad(_write(tmp_path / "e.csv", "user_id,sku,timestamp\nu,i,1\n"), "csv")
    assert "missing column 'item_id'" in err.reason and "found columns: user_id, sku, timestamp" in err.reason


def test_read_table_rejects_missing_mapped_value_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.csv", "user_id,item_id,timestamp\nu,i,1\n")
    with pytest.raises(DataError, match="missing column 'rating'"):
        read_table(path, "csv", ColumnMap(value="rating"))


def test_read_table_rejects_row_with_too_many_fields(tmp_path: Path) -> None:
    err = _bad(_write(tmp_path / "e.csv", "user_id,item_id,timestamp\nu,i,1\nu,i,2,9\n"), "csv")
    assert err.line == 3 and "expected 3 fields like the header, found 4" in err.reason


def test_read_table_rejects_row_with_too_few_fields(tmp_path: Path) -> None:
    err = _bad(_write(tmp_path / "e.tsv", "user_id\titem_id\ttimestamp\tx\nu\ti\t1\t\nu\ti\t2\n"), "tsv")
    assert err.line == 3 and "expected 4 fields like the header, found 3" in err.reason


def test_read_table_rejects_invalid_json_line(tmp_path: Path) -> None:
    lines = '{"user_id": "u", "item_id": "i", "timestamp": 1}\n\n{"user_id": "u", "item_id": \n'
    err = _bad(_write(tmp_path / "e.jsonl", lines), "jsonl")
    assert err.line == 3 and "invalid JSON" in err.reason


def test_read_table_rejects_non_utf8_bytes_with_line(tmp_path: Path) -> None:
    err = _bad(_write(tmp_path / "e.csv", b"user_id,item_id,timestamp\nu,i,1\nu,caf\xe9,2\n"), "csv")
    assert err.line == 3 and "invalid UTF-8" in err.reason


def test_read_table_rejects_a_time_that_is_neither_number_nor_iso_at_its_physical_line(tmp_path: Path) -> None:
    # A quoted field spanning two lines and a blank line sit before the bad row: it is on physical line 6.
    text = 'user_id,item_id,timestamp\nu,"two\nlines",1\n\nu,i,2019-11-11\nu,i,2019-11-31\n'
    err = _bad(_write(tmp_path / "e.csv", text), "csv")
    reason = "time value '2019-11-31' is neither a number nor an ISO-8601 time"
    assert (err.line, err.field, err.reason) == (6, "timestamp", reason)


def test_read_table_rejects_negative_time(tmp_path: Path) -> None:
    err = _bad(_write(tmp_path / "e.csv", "user_id,item_id,timestamp\nu,i,1\nu,i,-0.5\n"), "csv")
    assert err.line == 3 and "negative" in err.reason


def test_read_table_rejects_negative_time_in_parquet_by_row(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pl.DataFrame({"user_id": ["u", "u"], "item_id": ["i", "j"], "timestamp": [3, -1]}).write_parquet(path)
    err = _bad(path, "parquet")
    assert (err.row, err.line) == (1, None) and "time value -1 is negative" in err.reason


def test_read_table_rejects_empty_user_id(tmp_path: Path) -> None:
    err = _bad(_write(tmp_path / "e.csv", "user_id,item_id,timestamp\nu,i,1\n,i,2\n"), "csv")
    assert (err.line, err.field, err.reason) == (3, "user_id", "empty user id")


def test_read_table_rejects_missing_item_id_in_jsonl(tmp_path: Path) -> None:
    lines = '{"user_id": "u", "item_id": "i", "timestamp": 1}\n\n{"user_id": "u", "timestamp": 2}\n'
    err = _bad(_write(tmp_path / "e.jsonl", lines), "jsonl")
    assert (err.line, err.reason) == (3, "empty item id")


# ---- catalogue ---------------------------------------------------------------------------------------------


def test_read_catalogue_splits_category_strings_and_fills_missing_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "items.csv", 'item_id,title,categories\n1,Toy Story,"Animation|Comedy"\n2,,"a, b"\n3,X,\n')
    items = read_catalogue(path)
    assert items.schema == pl.Schema(CATALOGUE_SCHEMA)
    assert items.rows() == [
        ("1", "Toy Story", None, ["Animation", "Comedy"]),
        ("2", None, None, ["a", "b"]),
        ("3", "X", None, []),
    ]


def test_read_catalogue_reads_jsonl_list_categories_with_renamed_columns(tmp_path: Path) -> None:
    lines = '{"sku": 5, "name": "Lamp", "desc": "A lamp.", "tags": ["home"]}\n{"sku": 6, "name": "Cup", "tags": []}\n'
    path = _write(tmp_path / "items.jsonl", lines)
    items = read_catalogue(path, columns=ItemColumnMap.parse("item=sku,title=name,text=desc,categories=tags"))
    assert items.rows() == [("5", "Lamp", "A lamp.", ["home"]), ("6", "Cup", None, [])]


def test_read_catalogue_rejects_duplicate_item(tmp_path: Path) -> None:
    path = _write(tmp_path / "items.tsv", "item_id\ttitle\n1\tA\n2\tB\n1\tC\n")
    with pytest.raises(DataError, match="duplicate item id '1'") as info:
        read_catalogue(path)
    assert (info.value.path, info.value.line) == (str(path), 4)


def test_item_column_map_parse_marks_explicit_fields() -> None:
    m = ItemColumnMap.parse("item=sku,title=name,categories=")
    assert (m.item, m.title, m.text, m.categories) == ("sku", "name", "text", None)
    assert m.explicit == frozenset({"item", "title"})
    with pytest.raises(ValueError, match="unknown column map key 'tags'"):
        ItemColumnMap.parse("tags=x")
    with pytest.raises(ValueError, match="'item' needs a column name"):
        ItemColumnMap.parse("item=")


def test_read_catalogue_maps_columns_and_warns_once_per_ignored_column(tmp_path: Path) -> None:
    text = "sku,name,description,category,price,stock\nA1,Mug,Stoneware,kitchen|mugs,3,9\nB7,Towel,,kitchen,4,1\n"
    path = _write(tmp_path / "c.csv", text)
    with pytest.warns(IgnoredColumnWarning) as caught:
        items = read_catalogue(
            path, columns=ItemColumnMap.parse("title=name,text=description,categories=category"), default_item="sku"
        )
    assert items.rows() == [("A1", "Mug", "Stoneware", ["kitchen", "mugs"]), ("B7", "Towel", None, ["kitchen"])]
    assert sorted(str(w.message).split("'")[1] for w in caught) == ["price", "stock"]


def test_read_catalogue_requires_an_explicitly_mapped_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", "item_id,name\n1,A\n")
    with pytest.raises(DataError, match="missing column 'description'"):
        read_catalogue(path, columns=ItemColumnMap.parse("title=name,text=description"))


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        ("2024-03-01", 1709251200),
        ("2024-03-01T09:30:00Z", 1709285400),
        ("2024-03-01T09:30:00.250Z", 1709285400),
        ("2024-03-01 09:30:00+02:00", 1709278200),
        ("2024-03-01T09:30", 1709285400),
        ("1709285400", 1709285400),
        ("1709285400.9", 1709285400),
    ],
)
def test_read_table_reads_iso_8601_times_as_unix_seconds(stamp: str, seconds: int, tmp_path: Path) -> None:
    path = _write(tmp_path / "e.csv", f"user_id,item_id,timestamp\nu,i,{stamp}\n")
    assert read_table(path, "csv").events["time"].to_list() == [seconds]


def test_read_table_reads_datetime_and_date_columns(tmp_path: Path) -> None:
    import datetime as dt

    when = [dt.datetime(2024, 3, 1, 9, 30), dt.datetime(2024, 3, 2)]
    frame = pl.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"], "timestamp": when})
    frame.write_parquet(tmp_path / "naive.parquet")
    assert read_table(tmp_path / "naive.parquet", "parquet").events["time"].to_list() == [1709285400, 1709337600]
    aware = frame.with_columns(pl.col("timestamp").dt.replace_time_zone("Europe/Berlin"))
    aware.write_parquet(tmp_path / "aware.parquet")
    assert read_table(tmp_path / "aware.parquet", "parquet").events["time"].to_list() == [1709281800, 1709334000]
    frame.with_columns(pl.col("timestamp").dt.date()).write_parquet(tmp_path / "date.parquet")
    assert read_table(tmp_path / "date.parquet", "parquet").events["time"].to_list() == [1709251200, 1709337600]


def test_read_recbole_reads_inter_and_item_files(tmp_path: Path) -> None:
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t881250949\n1\t11\t5\t881250950\n"
    item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n10\tToy Story\t1995\tAnimation Comedy\n"
    _write(tmp_path / "ml.inter", inter)
    _write(tmp_path / "ml.item", item)
    with pytest.warns(IgnoredColumnWarning, match="release_year"):
        raw = read_recbole(tmp_path)
    assert raw.events.rows() == [("1", "10", 881250949, 4.0), ("1", "11", 881250950, 5.0)]
    assert raw.items is not None and raw.items.rows() == [("10", "Toy Story", None, ["Animation", "Comedy"])]
    assert [p.name for p in raw.source_files] == ["ml.inter", "ml.item"]


def test_read_recbole_rejects_a_header_without_types(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.inter", "user_id\titem_id\n1\t2\n")
    with pytest.raises(DataError, match="header cell 'user_id' is not name:type") as info:
        read_recbole(path)
    assert info.value.line == 1


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("e.csv", "csv"),
        ("e.TSV", "tsv"),
        ("e.parquet", "parquet"),
        ("e.jsonl", "jsonl"),
        ("e.ndjson", "jsonl"),
        ("ml.inter", "recbole"),
    ],
)
def test_infer_format_from_the_extension(name: str, fmt: str, tmp_path: Path) -> None:
    assert infer_format(tmp_path / name) == fmt


def test_infer_format_of_folders_and_unknown_names(tmp_path: Path) -> None:
    _write(tmp_path / "u.data", "1\t2\t3\t4\n")
    assert infer_format(tmp_path) == "movielens"
    parts = tmp_path / "parts"
    parts.mkdir()
    _write(parts / "a.parquet", b"")
    assert infer_format(parts) == "parquet"
    with pytest.raises(ValueError, match="cannot tell the format.*--format"):
        infer_format(tmp_path / "events.txt")
