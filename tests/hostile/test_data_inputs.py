"""Awkward data files: both engines (in memory: `read_files` + `prepare`; streaming: `prepare_streaming`) refuse
the same files with the same one-line error naming the file, line (or Parquet row) and column, and read float
ids as their integer text; ``--dataset registry:NAME`` reaches a registry dataset shadowed by a local folder."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from llmrec.data import PreparedDataset, prepare, read_files
from llmrec.data.streaming import prepare_streaming
from llmrec.errors import DataError

ROWS = "".join(f"u{u},{i},{t}\n" for u in range(1, 4) for t, i in enumerate(range(1, 6)))


def _in_memory(events: Path, items: Path | None = None) -> PreparedDataset:
    raw, source = read_files(events, items=items)
    return prepare(raw, source=source)


def _streaming(events: Path, items: Path | None = None) -> PreparedDataset:
    out = events.parent / f"{events.stem}-streamed"
    prepare_streaming(str(events), events.suffix[1:], out, items=items)
    return PreparedDataset.load(out)


ENGINES = pytest.mark.parametrize("engine", [_in_memory, _streaming], ids=["in-memory", "streaming"])


def _refused(engine: object, events: Path, items: Path | None = None) -> str:
    with pytest.raises(DataError) as caught:
        engine(events, items)  # type: ignore[operator]
    message = str(caught.value)
    assert "\n" not in message
    return message


@ENGINES
def test_a_column_named_twice_in_the_header_is_refused(engine: object, tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,item_id,timestamp\nu1,1,2,0\nu1,2,3,1\nu2,1,3,2\n")
    message = _refused(engine, events)
    assert message == f"{events}, line 1: column 'item_id' appears more than once in the header; rename or drop one"


@ENGINES
@pytest.mark.parametrize("cell", ["", "   ", "\t"], ids=["empty", "spaces", "tab"])
@pytest.mark.parametrize("role", ["user", "item"])
def test_blank_ids_are_refused_like_empty_ones(engine: object, role: str, cell: str, tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    bad = f"{cell},3,9\n" if role == "user" else f"u1,{cell},9\n"
    events.write_text("user_id,item_id,timestamp\n" + ROWS + bad)
    assert _refused(engine, events) == f"{events}, line 17, field '{role}_id': empty {role} id"


def _parquet(path: Path, items: list[float]) -> Path:
    users = [f"u{u}" for u in range(1, 4) for _ in range(len(items) // 3)]
    pl.DataFrame({"user_id": users, "item_id": items, "timestamp": list(range(len(items)))}).write_parquet(path)
    return path


@ENGINES
def test_whole_float_ids_read_as_integers_and_match_the_catalogue(engine: object, tmp_path: Path) -> None:
    events = _parquet(tmp_path / "events.parquet", [float(i) for _ in range(3) for i in range(1, 6)])
    catalogue = tmp_path / "items.csv"
    catalogue.write_text("item_id,title\n" + "".join(f"{i},Title {i}\n" for i in range(1, 6)))
    ds = engine(events, catalogue)  # type: ignore[operator]
    assert sorted(ds.raw_item_ids()) == ["1", "2", "3", "4", "5"]
    items = ds.items if hasattr(ds, "items") else None
    assert items is not None and items.filter(pl.col("item") == "3")["title"].to_list() == ["Title 3"]


@ENGINES
def test_fractional_float_ids_are_refused(engine: object, tmp_path: Path) -> None:
    events = _parquet(tmp_path / "events.parquet", [1.0, 2.0, 3.5, 4.0, 5.0, 1.0])
    message = _refused(engine, events)
    assert message == f"{events}, row 2, field 'item_id': item id 3.5 is not a whole number (a float id column)"


def test_float_ids_of_a_parquet_catalogue_too(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp\n" + ROWS)
    catalogue = tmp_path / "items.parquet"
    pl.DataFrame({"item_id": [1.0, 2.0, 3.0], "title": ["a", "b", "c"]}).write_parquet(catalogue)
    ds = _in_memory(events, catalogue)
    assert ds.items.filter(pl.col("item") == "3")["title"].to_list() == ["c"]


@ENGINES
def test_a_duplicate_catalogue_id_is_refused_with_its_line(engine: object, tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp\n" + ROWS)
    catalogue = tmp_path / "items.csv"
    catalogue.write_text("item_id,title\n1,a\n2,b\n3,c\n2,again\n")
    assert _refused(engine, events, catalogue) == f"{catalogue}, line 5, field 'item_id': duplicate item id '2'"


def test_a_duplicate_mind_news_id_is_refused(tmp_path: Path) -> None:
    (tmp_path / "behaviors.tsv").write_text("1\tU1\t11/11/2019 9:05:58 AM\tN1\tN2-1 N3-0\n")
    news = "".join(f"{n}\tcat\tsub\tTitle {n}\tabstract\turl\t[]\t[]\n" for n in ("N1", "N2", "N3", "N2"))
    (tmp_path / "news.tsv").write_text(news)
    with pytest.raises(DataError, match=r"news.tsv, line 4: duplicate news id 'N2' \(first on line 2\)"):
        read_files(tmp_path, "mind")


def test_registry_prefix_reaches_a_registry_dataset_shadowed_by_a_local_folder(
    tiny_prepared: PreparedDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmrec.data as data

    monkeypatch.chdir(tmp_path)
    tiny_prepared.save(tmp_path / "ml-100k")  # a local folder named like a registry dataset
    local, local_dir = data.open_dataset("ml-100k", tmp_path / "prep" / "ml-100k-data")
    assert local_dir == (tmp_path / "ml-100k").resolve()  # a bare name: the local folder, as before

    asked: list[str] = []

    def fake_read(name: str, path: object = None, **kwargs: object) -> object:
        asked.append(name)
        raise DataError("stop here", path=name)

    monkeypatch.setattr(data, "read_dataset", fake_read)
    with pytest.raises(DataError, match="stop here"):
        data.open_dataset("registry:ml-100k", tmp_path / "prep" / "registry:ml-100k-data")
    assert asked == ["ml-100k"]
    tiny_prepared.save(tmp_path / "prep" / "ml-100k-data")  # already prepared: read from <name>-data, no colon
    _, prepared_dir = data.open_dataset("registry:ml-100k", tmp_path / "prep" / "registry:ml-100k-data")
    assert prepared_dir == (tmp_path / "prep" / "ml-100k-data").resolve()
    with pytest.raises(ValueError, match="neither a prepared dataset folder nor a registry name"):
        data.open_dataset("registry:no-such", tmp_path / "prep" / "x")
