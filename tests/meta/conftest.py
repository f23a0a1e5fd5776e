"""Tiny fixtures for the cold-start tests: the tiny catalogue with a cold-user split, a tiny LM and its artifact.

Imports stay inside the fixtures (as in tests/conftest.py): collecting tests must not import torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from llmrec.data import PreparedDataset, RawData
    from llmrec.models import NextItemLM

TINY_LM = {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "dropout": 0.0, "emb_dropout": 0.0}


@pytest.fixture
def tiny_cold(tiny_raw: RawData) -> PreparedDataset:
    """20 users x 50 items, 30% of users held out: 3 cold_valid and 3 cold_test users (6-12 items each)."""
    from llmrec.data import PrepareConfig, prepare

    return prepare(tiny_raw, PrepareConfig(split="cold-user", cold_user_fraction=0.3))


@pytest.fixture
def tiny_lm(tiny_cold: PreparedDataset) -> NextItemLM:
    """An untrained tiny NextItemLM (seeded, no dropout), in eval mode."""
    from llmrec.training import build_model

    return build_model(tiny_cold, TINY_LM, seed=0)[0].eval()


@pytest.fixture
def tiny_base(tiny_cold: PreparedDataset, tiny_lm: NextItemLM, tmp_path: Path) -> Path:
    """The tiny LM saved as a model artifact that records its saved dataset (tmp_path/data)."""
    from llmrec.artifact import write_manifest
    from llmrec.training import save_artifact

    data = tiny_cold.save(tmp_path / "data")
    out = save_artifact(tiny_lm, tiny_cold, tmp_path / "base")
    meta = json.loads((out / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps({**meta, "prepared_path": str(data)}))
    write_manifest(out)  # the artifact lists dataset.json as it is now
    return out
