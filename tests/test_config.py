"""Experiment configuration: defaults < TOML file < --set, type checks that name the key, TOML round trip."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from llmrec.config import build, dump_toml, load_toml, merge_sections, parse_overrides
from llmrec.models.next_item_lm import NextItemLMConfig
from llmrec.training import TrainConfig


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def _sections(tmp_path: Path, text: str, overrides: list[str]) -> dict[str, dict[str, Any]]:
    return merge_sections(load_toml(_toml(tmp_path, text)), parse_overrides(overrides))


# ---- precedence ----------------------------------------------------------------------------------------------
def test_defaults_then_file_then_set(tmp_path: Path) -> None:
    text = '[train]\nlr = 0.01\nepochs = 5\n\n[model]\nd_model = 32\npos_encoding = "rotary"\n'
    sections = _sections(tmp_path, text, ["train.lr=3e-4", "model.loss=bce", "model.n_items=50"])
    assert sections == {
        "train": {"lr": 3e-4, "epochs": 5},
        "model": {"d_model": 32, "pos_encoding": "rotary", "loss": "bce", "n_items": 50},
    }
    train = build(TrainConfig, sections["train"], section="train")
    assert train == TrainConfig(lr=3e-4, epochs=5)
    assert train.batch_size == 128  # the default, untouched by file and --set
    model = build(NextItemLMConfig, sections["model"], section="model")
    assert (model.d_model, model.pos_encoding, model.loss, model.n_layers) == (32, "rotary", "bce", 2)


def test_later_set_wins_and_sections_merge_key_by_key() -> None:
    assert parse_overrides(["train.lr=1", "train.lr=2", "model.d_model=8"]) == {"train": {"lr": 2}, "model": {"d_model": 8}}
    merged = merge_sections({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}, "b": {"z": 4}}, {"a": {"x": 5}})
    assert merged == {"a": {"x": 5, "y": 3}, "b": {"z": 4}}


# ---- values and types ----------------------------------------------------------------------------------------
def test_set_values_are_parsed_as_toml() -> None:
    parsed = parse_overrides(
        ["t.a=3e-4", "t.b=true", "t.c=12", 't.d="rotary"', "t.e=rotary", "t.f=[10, 20]", "t.g = spaced out "]
    )
    assert parsed == {"t": {"a": 3e-4, "b": True, "c": 12, "d": "rotary", "e": "rotary", "f": [10, 20], "g": "spaced out"}}


@pytest.mark.parametrize("item", ["train.lr", "lr=1e-3", ".lr=1", "train.=1", "=1"])
def test_set_needs_section_key_value(item: str) -> None:
    with pytest.raises(ValueError, match="expected section.key=value"):
        parse_overrides([item])


def test_int_is_accepted_for_a_float() -> None:
    train = build(TrainConfig, parse_overrides(["train.lr=1"])["train"], section="train")
    assert train.lr == 1.0 and isinstance(train.lr, float)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": "ten"}, r"train\.epochs: expected int, got 'ten'"),
        ({"epochs": "5"}, r"train\.epochs: expected int, got '5'"),  # a quoted number in the file stays a string
        ({"epochs": 2.5}, r"train\.epochs: expected int, got 2\.5"),
        ({"epochs": True}, r"train\.epochs: expected int, got True"),  # bool is an int subclass in Python, not in TOML
        ({"lr": "fast"}, r"train\.lr: expected float, got 'fast'"),
        ({"progress": 1}, r"train\.progress: expected true/false, got 1"),
        ({"schedule": 3}, r"train\.schedule: expected str, got 3"),
    ],
)
def test_wrong_types_are_refused_naming_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(TrainConfig, values, section="train")


def test_unknown_keys_are_named_with_their_section(tmp_path: Path) -> None:
    sections = _sections(tmp_path, "[train]\nlearning_rate = 0.1\n", ["train.epoch=3"])
    with pytest.raises(
        ValueError,
        match=r"unknown config key\(s\): train\.learning_rate, train\.epoch; train\.learning_rate: did you mean "
        r"train\.lr\?; train\.epoch: did you mean train\.epochs\?; known: ",
    ):
        build(TrainConfig, sections["train"], section="train")
    # keys a caller handles itself may be let through
    assert build(TrainConfig, {"epochs": 3, "model_type": "x"}, section="train", allowed_extra=("model_type",)).epochs == 3


def test_load_toml_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"exp\.toml: invalid TOML"):
        load_toml(_toml(tmp_path, "[train\nlr = 1\n"))
    with pytest.raises(ValueError, match=r"exp\.toml: top-level key 'lr' must be a \[section\]"):
        load_toml(_toml(tmp_path, "lr = 1\n"))


# ---- round trip ----------------------------------------------------------------------------------------------
def test_dump_toml_load_toml_round_trip(tmp_path: Path) -> None:
    sections: dict[str, dict[str, Any]] = {
        "model": {"n_items": 50, "pos_encoding": "rotary", "tie_weights": False, "dropout": 0.25, "label_smoothing": 1e-5},
        "train": {"lr": 3e-4, "max_minutes": None, "metric": "ndcg@10"},
        "data": {"keep_events": ("click", "buy"), "note": 'a "quoted" C:\\path', "ks": [10, 20]},
    }
    text = dump_toml(sections, header="written by a test\nsecond line")
    assert text.startswith("# written by a test\n# second line\n")
    loaded = load_toml(_toml(tmp_path, text))
    assert loaded == {
        "model": sections["model"],
        "train": {"lr": 3e-4, "metric": "ndcg@10"},  # None is left out: the default applies again
        "data": {"keep_events": ["click", "buy"], "note": 'a "quoted" C:\\path', "ks": [10, 20]},
    }


def test_a_dumped_train_config_builds_the_same_config(tmp_path: Path) -> None:
    config = TrainConfig(epochs=7, lr=5e-4, schedule="constant", max_minutes=None, progress=False)
    text = dump_toml({"train": dataclasses.asdict(config)})
    assert build(TrainConfig, load_toml(_toml(tmp_path, text))["train"], section="train") == config


# ---- ranges ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "low", "high", "kwargs", "message"),
    [
        (0, 1, 4096, {}, "k: must be between 1 and 4096, got 0"),
        (1.0, 0.0, 1.0, {"high_open": True}, r"k: must be in \[0, 1\), got 1.0"),
        (float("inf"), 0.0, None, {"low_open": True}, "k: must be > 0 and finite, got inf"),
        (-1, 0, None, {}, "k: must be >= 0, got -1"),
        (True, 0, 5, {}, "k: must be between 0 and 5, got True"),  # a bool is not a number here
    ],
)
def test_check_range_names_the_key_and_the_range(
    value: float, low: float, high: float | None, kwargs: dict[str, bool], message: str
) -> None:
    from llmrec.config import SettingError, check_range

    with pytest.raises(SettingError, match=f"^{message}$"):
        check_range("k", value, low, high, **kwargs)
    check_range("k", low if not kwargs.get("low_open") else low + 1, low, high)  # the range itself passes


def test_build_puts_the_section_before_the_field() -> None:
    with pytest.raises(ValueError, match=r"^train\.lr: must be > 0 and finite, got inf$"):
        build(TrainConfig, {"lr": float("inf")}, section="train")
    with pytest.raises(ValueError, match=r"^model\.max_seq_len: must be between 1 and 16384, got 0$"):
        build(NextItemLMConfig, {"n_items": 5, "max_seq_len": 0}, section="model")


SHIPPED = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*/*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_is_accepted_by_its_model(path: Path) -> None:
    """configs/DATASET/NAME.toml (or NAME.VARIANT.toml) is a recipe for `--model NAME`: every key must pass that
    model's checks."""
    from llmrec.config import load_toml
    from llmrec.experiment import check_settings

    name = path.name.split(".")[0]
    run = check_settings(name, load_toml(path), progress=False)
    assert run.model == name
    for key, value in load_toml(path).get("train", {}).items():
        assert getattr(run.train, key) == value, key


def test_the_shipped_configs_are_found() -> None:
    assert {f"{p.parent.name}/{p.stem}" for p in SHIPPED} >= {
        "beauty/next-item-lm",
        "beauty/tvrec",
        "beauty/tvrec.strict",
        "lastfm/next-item-lm",
    }
