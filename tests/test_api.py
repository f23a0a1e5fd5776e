"""The top-level API: a frozen ``__all__`` (httpx style), every name resolving to its home, and a cheap import."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys

import pytest

import llmrec

# name -> the module that defines it; __all__ below must list exactly these plus __version__
HOMES = {
    "NextItemLM": "llmrec.models.next_item_lm",
    "NextItemLMConfig": "llmrec.models.next_item_lm",
    "PrepareConfig": "llmrec.data.prepare",
    "PreparedDataset": "llmrec.data.dataset",
    "Recommendation": "llmrec.recommend",
    "Recommender": "llmrec.recommend",
    "TrainConfig": "llmrec.training.loop",
    "UnknownCategoryWarning": "llmrec.filters",
    "UnknownIdWarning": "llmrec.filters",
    "evaluate": "llmrec.api",
    "export_artifact": "llmrec.export",
    "fit": "llmrec.training.fit",
    "prepare": "llmrec.api",
    "train": "llmrec.api",
    "write_recommendations": "llmrec.batch",
}


def test_all_is_frozen() -> None:
    # Changing the public API is a decision: update this list on purpose.
    assert llmrec.__all__ == [
        "NextItemLM",
        "NextItemLMConfig",
        "PrepareConfig",
        "PreparedDataset",
        "Recommendation",
        "Recommender",
        "TrainConfig",
        "UnknownCategoryWarning",
        "UnknownIdWarning",
        "__version__",
        "evaluate",
        "export_artifact",
        "fit",
        "prepare",
        "train",
        "write_recommendations",
    ]
    assert sorted(HOMES) == [n for n in llmrec.__all__ if n != "__version__"]


def test_train_is_a_plain_function_whatever_was_imported_first() -> None:
    import llmrec.training.loop  # the training subpackage has its own name: llmrec.train stays the function
    from llmrec.api import train

    assert llmrec.train is train and "train" in dir(llmrec)
    assert llmrec.training.train_loop is llmrec.training.loop.train_loop


@pytest.mark.parametrize("name", sorted(HOMES))
def test_each_name_resolves_to_its_home(name: str) -> None:
    value = getattr(llmrec, name)
    assert value is getattr(importlib.import_module(HOMES[name]), name)
    assert name in dir(llmrec)


def test_star_import_gives_every_name() -> None:
    namespace: dict[str, object] = {}
    exec("from llmrec import *", namespace)
    assert set(llmrec.__all__) <= set(namespace)


def test_version_matches_the_installed_metadata() -> None:
    assert llmrec.__version__ == "0.1.0" == importlib.metadata.version("llmrec")


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Recomender'"):
        _ = llmrec.Recomender  # type: ignore[attr-defined]


def test_import_llmrec_does_not_import_torch_or_polars() -> None:
    code = (
        "import sys\n"
        "import llmrec\n"
        "assert llmrec.__version__ and 'Recommender' in dir(llmrec)\n"
        "print(sorted(m for m in ('torch', 'polars', 'numpy', 'llmrec.data', 'llmrec.training') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
