"""Input files that were read wrongly without a word (issue 28 point 6): each is now one ``error:`` line naming
the file, the line and the reason, exit code 2, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from llmrec.cli import app

runner = CliRunner()


def _prepare(tmp_path: Path, events: Path, *extra: str | Path) -> Result:
    return runner.invoke(app, ["data", "prepare", "--events", str(events), *map(str, extra), "--out", str(tmp_path / "out")])


def _assert_refused(result: Result, tmp_path: Path, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def _rows(unit: int = 1, *, user_in_ms: int | None = None) -> list[tuple[str, str, int]]:
    """5 users x 6 events (user, item, Unix time), user `user_in_ms` with its times in milliseconds."""
    return [
        (f"u{u}", str((u * 3 + t) % 12 + 1), (1_700_000_000 + t * 100) * (1000 if u == user_in_ms else unit))
        for u in range(1, 6)
        for t in range(6)
    ]


def _csv(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    return path


@pytest.mark.parametrize("engine", [[], ["--streaming"]], ids=["in-memory", "streaming"])
def test_times_mixing_seconds_and_milliseconds_are_refused_at_the_first_odd_line(tmp_path: Path, engine: list[str]) -> None:
    events = _csv(tmp_path / "mixed.csv", _rows(user_in_ms=3))
    # u3's first event is data row 13: line 14 (after the header)
    _assert_refused(
        _prepare(tmp_path, events, *engine),
        tmp_path,
        "mixed.csv, line 14",
        "timestamp",
        "another unit",
        "seconds and milliseconds",
    )


@pytest.mark.parametrize("engine", [[], ["--streaming"]], ids=["in-memory", "streaming"])
@pytest.mark.parametrize("unit", [1, 1000, 1_000_000], ids=["seconds", "milliseconds", "microseconds"])
def test_one_unit_per_column_is_read_as_before(tmp_path: Path, unit: int, engine: list[str]) -> None:
    result = _prepare(tmp_path, _csv(tmp_path / "events.csv", _rows(unit)), *engine)
    assert result.exit_code == 0, result.output


def test_small_ordinal_times_next_to_unix_times_are_not_taken_for_another_unit(tmp_path: Path) -> None:
    rows = [(u, i, t if u != "u2" else t - 1_700_000_000) for u, i, t in _rows()]  # u2: steps 0, 100, 200 ...
    assert _prepare(tmp_path, _csv(tmp_path / "events.csv", rows)).exit_code == 0


def test_an_unclosed_quote_in_a_catalogue_names_its_line(tmp_path: Path) -> None:
    """Issue 28: the rest of the catalogue became the title of item 3."""
    events = _csv(tmp_path / "events.csv", _rows())
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f'{i},"Item {i}\n' if i == 3 else f"{i},Item {i}\n" for i in range(1, 13)))
    _assert_refused(_prepare(tmp_path, events, "--items", items), tmp_path, "items.csv, line 4", "never closed")


def test_quoted_values_over_several_lines_are_still_read(tmp_path: Path) -> None:
    events = _csv(tmp_path / "events.csv", _rows())
    items = tmp_path / "items.csv"
    items.write_text('item_id,title\n1,"A title\nover two lines"\n' + "".join(f"{i},Item {i}\n" for i in range(2, 13)))
    result = _prepare(tmp_path, events, "--items", items)
    assert result.exit_code == 0, result.output
    from llmrec.data import PreparedDataset

    titles = PreparedDataset.load(tmp_path / "out").items["title"].to_list()
    assert "A title\nover two lines" in titles and "Item 12" in titles


def _jsonl(path: Path, replace: dict[int, str]) -> Path:
    lines = [json.dumps({"user_id": u, "item_id": i, "timestamp": t}) for u, i, t in _rows()]
    for n, text in replace.items():
        lines[n - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def test_nan_in_json_lines_names_the_line(tmp_path: Path) -> None:
    """Issue 28: 'cannot read jsonl: InternalError(TapeError) at character 47' with no line."""
    events = _jsonl(tmp_path / "e.jsonl", {8: '{"user_id": "u2", "item_id": "5", "timestamp": NaN}'})
    _assert_refused(_prepare(tmp_path, events), tmp_path, "e.jsonl, line 8", "NaN is not a JSON value")


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('{"user_id": {"a": 1}, "item_id": "5", "timestamp": 1700000004}', "user id is an object"),
        ('{"user_id": "u1", "item_id": true, "timestamp": 1700000004}', "item id is a boolean"),
        ('{"user_id": ["u1"], "item_id": "5", "timestamp": 1700000004}', "user id is an array"),
    ],
)
def test_json_ids_that_are_objects_or_booleans_are_refused(tmp_path: Path, text: str, what: str) -> None:
    events = _jsonl(tmp_path / "e.jsonl", {5: text})
    _assert_refused(_prepare(tmp_path, events), tmp_path, "e.jsonl, line 5", what)


def test_json_string_ids_that_read_like_booleans_stay_ids(tmp_path: Path) -> None:
    events = _jsonl(tmp_path / "e.jsonl", {5: '{"user_id": "true", "item_id": "{5}", "timestamp": 1700000004}'})
    result = _prepare(tmp_path, events)
    assert result.exit_code == 0, result.output
