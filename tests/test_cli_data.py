"""`llmrec data ...` through typer's CliRunner: real mirror datasets, user errors (exit 2), lazy imports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from llmrec.cli import app
from llmrec.data import PreparedDataset

runner = CliRunner()


def _invoke(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def _mirror(name: str) -> Path:
    folder = Path(os.environ["LLMREC_DATA_MIRROR"]) / name
    if not folder.is_dir():
        pytest.skip(f"reference dataset {name!r} not at {folder} (see ../shared/datasets/README.md)")
    return folder


def _assert_user_error(result: Result, out: Path, *fragments: str) -> None:
    """Exit code 2, `error: ...` on stderr naming every fragment, no traceback, and no --out folder."""
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not any(p.name.startswith(f".{out.name}") for p in out.parent.iterdir())  # no temporary folder left


# ---- real datasets from the mirror ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "users", "items", "interactions"),
    [("ml-100k", "943", "1,682", "100,000"), ("lastfm", "1,090", "3,646", "52,551"), ("beauty", "22,363", "12,101", "198,502")],
)
def test_data_prepare_mirror_dataset_exact_stats(name: str, users: str, items: str, interactions: str, tmp_path: Path) -> None:
    _mirror(name)
    out = tmp_path / name
    result = _invoke("data", "prepare", "--dataset", name, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"prepared {users} users, {items} items, {interactions} interactions" in result.stdout

    stats = PreparedDataset.load(out).stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == tuple(
        int(n.replace(",", "")) for n in (users, items, interactions)
    )
    assert stats["test_examples"] == stats["users"]  # every user has >= 2 events in these sets

    table = _invoke("data", "stats", out)
    assert table.exit_code == 0, table.output
    for number in (users, items, interactions):
        assert number in table.stdout
    as_json = _invoke("data", "stats", out, "--json")
    shown = json.loads(as_json.stdout)
    assert as_json.exit_code == 0 and {k: shown[k] for k in stats} == json.loads(json.dumps(stats))
    assert set(shown) - set(stats) == {"catalogue", "time_range", "untrained_items"}


def test_data_prepare_records_provenance(tmp_path: Path) -> None:
    _mirror("ml-100k")
    result = _invoke("data", "prepare", "--dataset", "ml-100k", "--out", tmp_path / "ml", "--min-value", "4", "--k-core", "5")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "ml" / "manifest.json").read_text())
    assert manifest["source"]["dataset"] == "ml-100k" and manifest["source"]["origin"] == "mirror"
    assert manifest["source"]["sha256"]["u.data"] == "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"
    assert manifest["prepare"]["min_value"] == 4.0
    assert (manifest["prepare"]["user_core"], manifest["prepare"]["item_core"]) == (5, 5)
    assert manifest["domain"] == "movies"
    assert manifest["name"] == "ml-100k"


def test_data_list_shows_local_datasets() -> None:
    _mirror("ml-100k")
    result = _invoke("data", "list")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert "mirror" in rows["ml-100k"] and "not found" in rows["ml-1m"]


# ---- your own files ---------------------------------------------------------------------------------------------
def test_data_prepare_own_csv_with_options(tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_text(
        "uid,sku,ts,kind,stars\n"
        "a,x,1,purchase,5\na,y,2,purchase,4\na,z,3,click,5\na,y,4,purchase,1\n"
        "b,x,1,purchase,4\nb,y,2,purchase,5\nb,x,3,purchase,3\n"
        "c,z,1,purchase,5\n"
    )
    catalogue = tmp_path / "items.csv"
    catalogue.write_text("item_id,title\nx,Ex\ny,Why\nz,Zed\n")
    out = tmp_path / "out"
    result = _invoke(
        "data", "prepare", "--events", events, "--format", "csv", "--items", catalogue,
        "--columns", "user=uid,item=sku,time=ts,event=kind,value=stars",
        "--keep-events", "purchase", "--min-value", "3", "--k-core", "2", "--domain", "ecommerce", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ds = PreparedDataset.load(out)
    # purchases rated >= 3: a [x, y], b [x, y, x], c [z] -> 2-core drops c and z
    assert ds.users["user"].to_list() == ["a", "b"]
    assert [s.tolist() for s in ds.sequences] == [[1, 2], [1, 2, 1]]
    assert ds.items["title"].to_list() == ["Ex", "Why"]
    assert ds.manifest["prepare"]["keep_events"] == ["purchase"] and ds.domain == "ecommerce"
    assert set(ds.manifest["source"]["files"]) == {str(events), str(catalogue)}


def test_data_prepare_option_wiring(tmp_path: Path) -> None:
    events = tmp_path / "events.tsv"
    events.write_text(
        "user_id\titem_id\ttimestamp\n"
        + "".join(f"u{u}\t{i}\t{t}\n" for u in range(3) for i, t in [("a", 0), ("b", 1), ("b", 1), ("c", 2)])
    )
    out = tmp_path / "out"
    args = [
        "--no-dedupe",
        "--k-core",
        "3",
        "--user-core",
        "1",
        "--split",
        "temporal",
        "--valid-cutoff",
        "1",
        "--test-cutoff",
        "2",
    ]
    result = _invoke("data", "prepare", "--events", events, "--format", "tsv", *args, "--out", out)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert {k: manifest["prepare"][k] for k in ("dedupe", "user_core", "item_core", "split", "valid_cutoff", "test_cutoff")} == {
        "dedupe": False,
        "user_core": 1,  # --user-core beats --k-core
        "item_core": 3,
        "split": "temporal",
        "valid_cutoff": 1.0,
        "test_cutoff": 2.0,
    }
    assert manifest["stats"]["interactions"] == 12  # (u, b, 1) twice for every u: kept
    assert manifest["stats"]["valid_examples"] == manifest["stats"]["test_examples"] == 3


def test_data_prepare_bad_s3rec_line_exits_2(tmp_path: Path) -> None:
    events = tmp_path / "log.txt"
    events.write_text("1 10 11 12\n2 10 x\n")
    out = tmp_path / "out"
    result = _invoke("data", "prepare", "--events", events, "--format", "s3rec", "--out", out)
    _assert_user_error(result, out, str(events), "line 2", "'x'")


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"user_id,item_id,timestamp\nu1,i1,100\nu2,i2\n", ["line 3", "fields"]),
        (b"user_id,item_id\nu1,i1\n", ["missing column 'timestamp'"]),
        (b"", ["empty"]),
        (b"user_id,item_id,timestamp\nu1,i1,100\nu\xff2,i2,200\n", ["line 3", "UTF-8"]),
        (b"user_id,item_id,timestamp\nu1,i1,100\nu2,i2,-5\n", ["line 3", "negative"]),
        (
            b"user_id,item_id,timestamp\nu1,i1,100\nu2,i2,yesterday\n",
            ["line 3", "'yesterday' is neither a number nor an ISO-8601 time"],
        ),
    ],
    ids=["malformed-row", "missing-column", "empty-file", "non-utf8", "negative-time", "non-numeric-time"],
)
def test_data_prepare_bad_csv_exits_2(content: bytes, fragments: list[str], tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    events.write_bytes(content)
    out = tmp_path / "out"
    result = _invoke("data", "prepare", "--events", events, "--format", "csv", "--out", out)
    _assert_user_error(result, out, str(events), *fragments)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "exactly one of --dataset"),
        (["--dataset", "ml-100k", "--events", "x.csv"], "exactly one of --dataset"),
        (["--events", "x.txt"], "cannot tell the format from the name; give --format"),
        (["--events", "x.csv", "--item-columns", "title=name"], "--item-columns maps the catalogue"),
        (["--dataset", "ml-100k", "--item-columns", "title=name"], "go with --events"),
        (["--events", "x.csv", "--items", "c.csv", "--item-columns", "colour=c"], "unknown column map key 'colour'"),
        (["--dataset", "ml-100k", "--format", "csv"], "go with --events"),
        (["--dataset", "ml-100k", "--split", "random"], "split must be one of"),
        (["--dataset", "ml-100k", "--domain", "space"], "unknown domain 'space'"),
        (["--dataset", "ml-100k", "--cold-user-fraction", "1.5"], "cold_user_fraction"),
        (["--events", "nowhere.csv", "--format", "csv"], "nowhere.csv: file not found"),
        (["--events", "x.csv", "--format", "xlsx"], "unknown format 'xlsx'"),
        (["--events", "x.csv", "--format", "csv", "--columns", "user"], "not key=column"),
    ],
)
def test_data_prepare_bad_options_exit_2(args: list[str], fragment: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _assert_user_error(_invoke("data", "prepare", *args, "--out", out), out, fragment)


def test_data_prepare_reads_recbole_atomic_files_by_extension_with_a_name(tmp_path: Path) -> None:
    inter = "user_id:token\titem_id:token\ttimestamp:float\n" + "".join(
        f"{u}\t{i}\t{u * 10 + i}\n" for u in range(1, 4) for i in range(1, 5)
    )
    (tmp_path / "shop.inter").write_text(inter)
    (tmp_path / "shop.item").write_text("item_id:token\ttitle:token_seq\tbrand:token\n1\tBlue mug\tacme\n2\tTowel\tacme\n")
    out = tmp_path / "out"
    result = _invoke("data", "prepare", "--events", tmp_path / "shop.inter", "--name", "my shop", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning:") == 1 and "'brand:token' is ignored" in result.stderr
    prepared = PreparedDataset.load(out)
    assert prepared.manifest["name"] == prepared.name == "my shop"
    assert prepared.manifest["source"]["format"] == "recbole"
    assert (prepared.n_users, prepared.n_items) == (3, 4)
    assert prepared.items["title"].to_list() == ["Blue mug", "Towel", None, None]


def test_data_prepare_refuses_a_prepared_folder_as_dataset(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    data = tiny_prepared.save(tmp_path / "data")
    out = tmp_path / "o"
    _assert_user_error(_invoke("data", "prepare", "--dataset", data, "--out", out), out, "already a prepared dataset")


def test_data_prepare_unknown_dataset_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _assert_user_error(_invoke("data", "prepare", "--dataset", "ml-10", "--out", out), out, "unknown dataset 'ml-10'", "ml-100k")


def test_data_prepare_corrupted_mirror_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(_mirror("lastfm"), mirror / "lastfm")
    txt = mirror / "lastfm" / "LastFM.txt"
    txt.write_bytes(txt.read_bytes()[:1000])  # truncated
    monkeypatch.setenv("LLMREC_DATA_MIRROR", str(mirror))
    out = tmp_path / "out"
    _assert_user_error(_invoke("data", "prepare", "--dataset", "lastfm", "--out", out), out, str(txt), "SHA-256 mismatch")
    listing = _invoke("data", "list")
    assert listing.exit_code == 0, listing.output
    rows = {line.split("│")[1].strip(): line for line in listing.stdout.splitlines() if line.count("│") >= 4}
    assert "corrupted" in rows["lastfm"] and "not found" in rows["ml-100k"]


def test_data_prepare_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    _mirror("ml-100k")
    out = tmp_path / "notes"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = _invoke("data", "prepare", "--dataset", "ml-100k", "--out", out)
    assert result.exit_code == 2 and "refusing to replace" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_data_prepare_replaces_a_prepared_folder(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    _mirror("ml-100k")
    out = tiny_prepared.save(tmp_path / "ds")
    result = _invoke("data", "prepare", "--dataset", "ml-100k", "--out", out)
    assert result.exit_code == 0, result.output
    assert PreparedDataset.load(out).n_users == 943


# ---- data stats -------------------------------------------------------------------------------------------------
def test_data_stats_tiny(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    out = tiny_prepared.save(tmp_path / "tiny")
    stats = tiny_prepared.stats()
    result = _invoke("data", "stats", out)
    assert result.exit_code == 0, result.output
    for label in ("users", "items", "interactions", "density", "sequence length", "item popularity", "test examples"):
        assert label in result.stdout
    assert f"{stats['interactions']:,}" in result.stdout


def test_data_stats_errors_exit_2(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    result = _invoke("data", "stats", tmp_path)
    assert result.exit_code == 2 and "not a prepared dataset" in result.stderr
    out = tiny_prepared.save(tmp_path / "tiny")
    (out / "items.parquet").write_bytes((out / "items.parquet").read_bytes()[:-8])
    result = _invoke("data", "stats", out)
    assert result.exit_code == 2 and "items.parquet: checksum mismatch" in result.stderr
    assert "Traceback" not in result.output


# ---- imports stay lazy ------------------------------------------------------------------------------------------
def test_cli_help_does_not_import_torch_or_polars() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from llmrec.cli import app\n"
        "for args in (['--help'], ['data', '--help'], ['data', 'prepare', '--help'], ['data', 'stats', '--help']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('torch', 'polars', 'numpy', 'llmrec.data') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ---- ISO-8601 cutoffs, catalogue coverage and time range ------------------------------------------------------
def _iso_events(tmp_path: Path) -> Path:
    events = tmp_path / "events.csv"
    rows = ["uid,sku,ts"]
    for u in "abcd":
        rows += [f"{u},{i},2024-03-{day:02d}T09:00:00Z" for day, i in zip((1, 2, 3, 10, 20), "vwxyz", strict=True)]
    events.write_text("\n".join(rows) + "\n")
    return events


def test_temporal_cutoffs_accept_iso_8601_like_the_events(tmp_path: Path) -> None:
    events = _iso_events(tmp_path)
    base = ["data", "prepare", "--events", events, "--columns", "user=uid,item=sku,time=ts", "--split", "temporal"]
    iso = _invoke(*base, "--valid-cutoff", "2024-03-05", "--test-cutoff", "2024-03-15T00:00:00Z", "--out", tmp_path / "iso")
    assert iso.exit_code == 0, iso.output
    # 2024-03-05 = 1709596800 and 2024-03-15 = 1710460800 Unix seconds: the same split as the numbers
    num = _invoke(*base, "--valid-cutoff", "1709596800", "--test-cutoff", "1710460800", "--out", tmp_path / "num")
    assert num.exit_code == 0, num.output
    a, b = PreparedDataset.load(tmp_path / "iso"), PreparedDataset.load(tmp_path / "num")
    assert a.manifest["stats"] == b.manifest["stats"] and a.manifest["stats"]["test_examples"] == 4
    bad = _invoke(*base, "--valid-cutoff", "March 5th", "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "--valid-cutoff: 'March 5th' is neither a number nor an ISO-8601 time" in bad.stderr
    assert "Traceback" not in bad.output


def test_data_stats_shows_catalogue_coverage_and_time_range(tiny_prepared: PreparedDataset, tmp_path: Path) -> None:
    out = tiny_prepared.save(tmp_path / "tiny")
    result = _invoke("data", "stats", out)
    assert result.exit_code == 0, result.output
    for label in ("with title", "with text", "with categories", "first event", "last event"):
        assert label in result.stdout
    as_json = json.loads(_invoke("data", "stats", out, "--json").stdout)
    flat = np.concatenate(tiny_prepared.times)
    # the tiny times (about 1,000,000) are not Unix seconds of a plausible date: no ISO form is made up
    assert as_json["time_range"] == {"min": int(flat.min()), "max": int(flat.max()), "first_utc": None, "last_utc": None}
    assert as_json["catalogue"]["items"] == tiny_prepared.n_items
    assert as_json["catalogue"]["title"] == tiny_prepared.items["title"].drop_nulls().len()
