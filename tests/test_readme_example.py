"""The README's "Your own data" example, run as written on a small shop log with ISO times and a titled catalogue."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data import PreparedDataset

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = ["--set", "train.epochs=2", "--set", "model.d_model=16", "--set", "model.n_layers=1", "--set", "model.max_seq_len=8"]


def _section_commands(title: str) -> list[list[str]]:
    """The `llmrec ...` commands of the section's bash block (continuations joined, comments dropped)."""
    section = README.read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None, f"no bash block in README section {title!r}"
    text = block.group(1).replace("\\\n", " ")
    return [shlex.split(line.split("#", 1)[0])[1:] for line in text.splitlines() if line.startswith("llmrec ")]


def _write_shop(root: Path) -> list[str]:
    """events.csv (uid, sku, ts as mixed ISO-8601 forms) and catalogue.csv (sku, name, description, category, price)."""
    rng = np.random.default_rng(7)
    titles = [f"Product {i}" for i in range(12)]
    rows = ["uid,sku,ts"]
    for u in range(25):
        for n, item in enumerate(rng.choice(12, size=8, replace=False)):
            day, hour = 1 + n, int(rng.integers(0, 24))
            stamp = (f"2024-03-{day:02d}T{hour:02d}:00:00Z", f"2024-03-{day:02d} {hour:02d}:30:00+01:00", f"2024-03-{day:02d}")[
                n % 3
            ]
            rows.append(f"u{u},SKU{item},{stamp}")
    (root / "events.csv").write_text("\n".join(rows) + "\n")
    lines = ["sku,name,description,category,price"]
    lines += [
        f"SKU{i},{titles[i]},A {('red', 'blue')[i % 2]} thing,{('kitchen|mugs', 'garden')[i % 2]},{i + 0.5}" for i in range(12)
    ]
    (root / "catalogue.csv").write_text("\n".join(lines) + "\n")
    return titles


def test_readme_own_data_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    titles = _write_shop(tmp_path)
    monkeypatch.chdir(tmp_path)
    commands = [c for c in _section_commands("Your own data") if c[0] != "serve"]
    assert [c[:2] for c in commands] == [["data", "prepare"], ["train", "--dataset"], ["recommend", "--model"]]
    runner = CliRunner()

    prepare = runner.invoke(app, commands[0])
    assert prepare.exit_code == 0, prepare.output
    warnings = [line for line in prepare.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "'price' is ignored" in warnings[0]
    data = PreparedDataset.load(tmp_path / "runs" / "shop" / "data")
    assert data.manifest["name"] == "shop" and data.n_users == 25 and data.n_items == 12
    assert data.items.filter(data.items["item"] == "SKU0")["title"].item() == "Product 0"
    assert data.items.filter(data.items["item"] == "SKU0")["categories"].item().to_list() == ["kitchen", "mugs"]
    assert data.items.filter(data.items["item"] == "SKU1")["text"].item() == "A blue thing"
    # ISO times became Unix seconds in order: each user's events run over consecutive days of March 2024
    march_1, march_9 = 1709251200, 1709251200 + 8 * 86400
    assert all(march_1 - 3600 <= t.min() and t.max() < march_9 for t in data.times)

    train = runner.invoke(app, [*commands[1], *FAST])
    assert train.exit_code == 0, train.output
    recommend = runner.invoke(app, [*commands[2], "--json"])
    assert recommend.exit_code == 0, recommend.output
    recs = json.loads(recommend.stdout)
    assert len(recs) >= 1 and all(r["title"] in titles for r in recs)


def test_catalogue_item_column_defaults_to_the_events_item_column(tmp_path: Path) -> None:
    _write_shop(tmp_path)
    out = tmp_path / "data"
    args = ["data", "prepare", "--events", str(tmp_path / "events.csv"), "--columns", "user=uid,item=sku,time=ts"]
    result = CliRunner().invoke(app, [*args, "--items", str(tmp_path / "catalogue.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    ignored = sorted(re.findall(r"column '(\w+)' is ignored", result.stderr))
    assert ignored == ["category", "description", "name", "price"]  # nothing mapped them; each said once
    assert PreparedDataset.load(out).manifest["name"] == "events"
