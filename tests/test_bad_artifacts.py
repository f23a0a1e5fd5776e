"""Damaged, mismatched and unwritable files through the CLI: every case is one `error: <file>: <reason>` line on
stderr and exit code 2, never a traceback, and nothing half-written is left behind.

Table-driven: each file an artifact holds x each way to damage it (truncate, garbage, empty, wrong shape) x each
command that reads it. The artifacts are built once per module (a tiny LM, one epoch) and copied per case.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pytest
from typer.testing import Result

from llmrec.artifact import write_manifest

if TYPE_CHECKING:
    from tests.conftest import Cli


def _prepare(out: Path, n_items: int = 30, seed: int = 0, prefix: str = "") -> Path:
    """A small prepared dataset (20 users, `n_items` items, ids prefixed by `prefix`)."""
    from llmrec.data import PrepareConfig, RawData, prepare

    rng = np.random.default_rng(seed)
    rows = []
    for u in range(20):
        for t, i in enumerate(rng.choice(n_items, size=8, replace=False)):
            rows.append((f"u{u}", f"{prefix}{i}", 1000 + t))
    events = pl.DataFrame(rows, schema={"user": pl.String, "item": pl.String, "time": pl.Int64}, orient="row")
    prepared = prepare(RawData(events=events, items=None, users=None, domain="generic", source_files=[]), PrepareConfig())
    return prepared.save(out)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> Path:
    """<root>/data (prepared) and <root>/lm (a one-epoch next-item LM with its training state in lm/train)."""
    root = tmp_path_factory.mktemp("artifacts")
    _prepare(root / "data")
    result = cli.invoke("train", "--dataset", root / "data", "--out", root / "lm", *cli.TINY, *cli.QUICK)
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def work(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "w")
    return tmp_path / "w"


# ---- ways to damage a file ---------------------------------------------------------------------------------------
def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _garbage(p: Path) -> None:
    p.write_bytes(np.random.default_rng(0).integers(0, 256, size=max(64, p.stat().st_size), dtype=np.uint8).tobytes())


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _wrong_shape(p: Path) -> None:
    """A well-formed file of the right kind with the wrong content."""
    if p.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file({"unrelated": np.zeros((3, 5), dtype=np.float32)}, str(p))
    elif p.suffix == ".parquet":
        pl.DataFrame({"unrelated": [1, 2, 3]}).write_parquet(p)
    else:
        p.write_text(json.dumps([1, 2, 3]))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncate": _truncate,
    "garbage": _garbage,
    "empty": _empty,
    "wrong-shape": _wrong_shape,
}


# ---- commands that read a model artifact --------------------------------------------------------------------------
def _recommend(w: Path, cli: Cli) -> Result:
    return cli.invoke("recommend", "--model", w / "lm", "--user", "u1", "-k", "3")


def _explain(w: Path, cli: Cli) -> Result:
    return cli.invoke("explain", "--model", w / "lm", "--user", "u1", "-k", "2")


def _evaluate(w: Path, cli: Cli) -> Result:
    return cli.invoke("evaluate", "--model", w / "lm", "--dataset", w / "data", "--n-boot", "10")


def _serve(w: Path, cli: Cli) -> Result:
    import uvicorn

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a damaged artifact must fail before the server starts")

    run, uvicorn.run = uvicorn.run, never  # type: ignore[assignment]
    try:
        return cli.invoke("serve", "--model", w / "lm", "--port", "0")
    finally:
        uvicorn.run = run


MODEL_COMMANDS = {"recommend": _recommend, "explain": _explain, "evaluate": _evaluate, "serve": _serve}
# What each command reads from the artifact (evaluate scores histories from the dataset, not the artifact's).
READS = {
    "recommend": ("config.json", "model.safetensors", "items.parquet", "histories.parquet", "dataset.json"),
    "explain": ("config.json", "model.safetensors", "items.parquet", "histories.parquet", "dataset.json"),
    "serve": ("config.json", "model.safetensors", "items.parquet", "histories.parquet", "dataset.json"),
    "evaluate": ("config.json", "model.safetensors", "dataset.json"),
}
MODEL_CASES = [(cmd, f, d) for cmd, files in READS.items() for f in files for d in DAMAGE]


@pytest.mark.parametrize(("command", "file", "damage"), MODEL_CASES)
def test_a_damaged_model_file_is_named(command: str, file: str, damage: str, work: Path, cli: Cli) -> None:
    path = work / "lm" / file
    DAMAGE[damage](path)
    cli.assert_user_error(MODEL_COMMANDS[command](work, cli), str(path))


@pytest.mark.parametrize("file", ["manifest.json", "sequences.parquet", "users.parquet", "items.parquet"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_dataset_file_is_named(file: str, damage: str, work: Path, cli: Cli) -> None:
    path = work / "data" / file
    DAMAGE[damage](path)
    cli.assert_user_error(_evaluate(work, cli), str(path))


def test_messages_say_damaged_or_incomplete(work: Path, cli: Cli) -> None:
    _truncate(work / "lm" / "model.safetensors")
    cli.assert_user_error(_recommend(work, cli), f"{work / 'lm' / 'model.safetensors'}: damaged or incomplete (")


def test_weights_of_another_size_name_the_weights(work: Path, tmp_path: Path, cli: Cli) -> None:
    other = tmp_path / "other"
    assert (
        cli.invoke(
            "train", "--dataset", work / "data", "--out", other, *cli.TINY, *cli.QUICK, "--set", "model.d_model=8"
        ).exit_code
        == 0
    )
    shutil.copy(other / "model.safetensors", work / "lm" / "model.safetensors")
    write_manifest(work / "lm")  # a manifest that agrees: the loader's own check names the mismatch
    cli.assert_user_error(_recommend(work, cli), str(work / "lm" / "model.safetensors"), "does not fit config.json")


# ---- train --resume with a damaged or different checkpoint -------------------------------------------------------
CHECKPOINT_FILES = ("model.safetensors", "optimizer.safetensors", "state.json", "config.json")


@pytest.mark.parametrize("file", CHECKPOINT_FILES)
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_from_a_damaged_checkpoint_names_the_file(file: str, damage: str, work: Path, cli: Cli) -> None:
    DAMAGE[damage](work / "lm" / "train" / "checkpoint" / file)
    result = cli.invoke("train", "--dataset", work / "data", "--out", work / "lm", *cli.TINY, *cli.QUICK, "--resume")
    # --resume continues in the hidden run folder beside the artifact, where the checkpoint was copied back
    cli.assert_user_error(result, str(work / ".lm.train" / "checkpoint" / file))
    assert (work / "lm" / "config.json").is_file()  # the finished artifact is untouched


def test_resume_with_another_d_model_says_which_setting(work: Path, cli: Cli) -> None:
    sizes = [a if a != "model.d_model=16" else "model.d_model=32" for a in cli.TINY]
    result = cli.invoke("train", "--dataset", work / "data", "--out", work / "lm", *sizes, *cli.QUICK, "--resume")
    cli.assert_user_error(result, "--resume: checkpoint was trained with d_model 16, config asks 32")


def test_resume_with_another_dataset_is_refused(work: Path, cli: Cli) -> None:
    _prepare(work / "other-size", n_items=25, seed=1)
    result = cli.invoke("train", "--dataset", work / "other-size", "--out", work / "lm", *cli.TINY, *cli.QUICK, "--resume")
    cli.assert_user_error(result, "--resume: checkpoint was trained on")
    _prepare(work / "same-size", n_items=30, seed=0, prefix="x")  # same sizes, other item ids
    result = cli.invoke("train", "--dataset", work / "same-size", "--out", work / "lm", *cli.TINY, *cli.QUICK, "--resume")
    cli.assert_user_error(result, "--resume: checkpoint was trained on another dataset")


def test_a_refused_resume_leaves_the_run_as_it_was(work: Path, cli: Cli) -> None:
    sizes = [a if a != "model.d_model=16" else "model.d_model=32" for a in cli.TINY]
    result = cli.invoke(
        "train", "--dataset", work / "data", "--out", work / "lm", *sizes, *cli.QUICK, "--set", "train.lr=0.5", "--resume"
    )
    cli.assert_user_error(result, "--resume: checkpoint was trained with d_model 16, config asks 32")
    run = work / ".lm.train"  # where --resume continues: a copy of lm/train
    assert (run / "train_config.json").read_bytes() == (work / "lm" / "train" / "train_config.json").read_bytes()
    assert json.loads((run / "train_config.json").read_text())["lr"] != 0.5


def test_resuming_a_checkpoint_without_a_dataset_identity_records_it(work: Path, cli: Cli) -> None:
    (work / "lm" / "train" / "dataset_identity.json").unlink()  # as written before identities were recorded
    result = cli.invoke("train", "--dataset", work / "data", "--out", work / "lm", *cli.TINY, *cli.QUICK, "--resume")
    assert result.exit_code == 0, result.output
    assert (work / "lm" / "train" / "dataset_identity.json").is_file()
    _prepare(work / "same-size", n_items=30, seed=0, prefix="x")  # same sizes, other item ids: now refused
    result = cli.invoke("train", "--dataset", work / "same-size", "--out", work / "lm", *cli.TINY, *cli.QUICK, "--resume")
    cli.assert_user_error(result, "--resume: checkpoint was trained on another dataset")


def test_resume_without_a_checkpoint_leaves_nothing(work: Path, cli: Cli) -> None:
    result = cli.invoke("train", "--dataset", work / "data", "--out", work / "new", *cli.TINY, *cli.QUICK, "--resume")
    cli.assert_user_error(result, "--resume", "no checkpoint")
    assert not (work / ".new.train").exists() and not (work / "new").exists()


def test_train_on_cuda_without_cuda_is_one_line(work: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = cli.invoke("train", "--dataset", work / "data", "--out", work / "gpu", *cli.TINY, *cli.QUICK, "--device", "cuda")
    cli.assert_user_error(result, "--device cuda", "no CUDA device")


# ---- a model paired with data it was not trained on -------------------------------------------------------------
@pytest.mark.parametrize(("n_items", "prefix"), [(25, ""), (30, "x")], ids=["other-size", "same-size-other-ids"])
def test_evaluate_refuses_a_dataset_the_model_was_not_trained_on(work: Path, n_items: int, prefix: str, cli: Cli) -> None:
    _prepare(work / "other", n_items=n_items, seed=1, prefix=prefix)
    result = _evaluate_on(work, work / "other", cli)
    cli.assert_user_error(result, "--dataset", "not the data it was trained on")


def _evaluate_on(w: Path, data: Path, cli: Cli) -> Result:
    return cli.invoke("evaluate", "--model", w / "lm", "--dataset", data, "--n-boot", "10")


def test_evaluate_refuses_data_reprepared_into_the_recorded_path(work: Path, cli: Cli) -> None:
    shutil.rmtree(work / "data")
    _prepare(work / "data", n_items=30, seed=5)  # same path and sizes, other users' events
    recorded = json.loads((work / "lm" / "dataset.json").read_text())
    recorded["prepared_path"] = str(work / "data")
    (work / "lm" / "dataset.json").write_text(json.dumps(recorded))
    write_manifest(work / "lm")  # recorded by llmrec, not damaged
    result = cli.invoke("evaluate", "--model", work / "lm", "--n-boot", "10")
    cli.assert_user_error(result, "not the data it was trained on")


def test_an_artifact_without_a_recorded_identity_is_checked_by_its_items(work: Path, cli: Cli) -> None:
    meta = json.loads((work / "lm" / "dataset.json").read_text())
    del meta["identity"]  # as saved before identities were recorded
    (work / "lm" / "dataset.json").write_text(json.dumps(meta))
    (work / "lm" / "manifest.json").unlink()  # which was before manifests too
    assert _evaluate_on(work, work / "data", cli).exit_code == 0
    _prepare(work / "other", n_items=30, seed=1, prefix="x")
    cli.assert_user_error(_evaluate_on(work, work / "other", cli), "not the data it was trained on")


def test_map_cold_items_and_meta_train_refuse_another_dataset(work: Path, cli: Cli) -> None:
    _prepare(work / "other", n_items=30, seed=1, prefix="x")
    result = cli.invoke("map-cold-items", "--model", work / "lm", "--dataset", work / "other", "--out", work / "mapped")
    cli.assert_user_error(result, "not the data it was trained on")
    result = cli.invoke("meta-train", "--dataset", work / "other", "--base", work / "lm", "--out", work / "meta")
    cli.assert_user_error(result, "not the data it was trained on")
    assert not (work / "mapped").exists() and not (work / "meta").exists()


# ---- the file system refuses to write -------------------------------------------------------------------------
def _refuse_mkdtemp(code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def fake(*args: object, dir: str | Path | None = None, **kwargs: object) -> str:  # noqa: A002
        raise OSError(code, os.strerror(code), str(dir))

    monkeypatch.setattr(tempfile, "mkdtemp", fake)
    monkeypatch.setattr(tempfile, "mkstemp", fake)


def _events_csv(path: Path) -> None:
    pl.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["1", "2", "1", "3"], "timestamp": [1, 2, 1, 2]}).write_csv(path)


WRITERS = ("prepare", "train", "evaluate", "tune", "meta-train", "map-cold-items", "build-index", "export", "recommend")


def _writing_commands(w: Path, cli: Cli) -> dict[str, tuple[list[str | Path], Path]]:
    """Every command that writes (`WRITERS`): (arguments, the output that must not exist after a refused write)."""
    commands: dict[str, tuple[list[str | Path], Path]] = {
        "prepare": (["data", "prepare", "--events", w / "events.csv", "--format", "csv", "--out", w / "out"], w / "out"),
        "train": (["train", "--dataset", w / "data", "--out", w / "out", "--model", "most-popular"], w / "out"),
        "evaluate": (
            ["evaluate", "--model", w / "lm", "--dataset", w / "data", "--n-boot", "10", "--out", w / "r.json"],
            w / "r.json",
        ),
        "tune": (
            [
                "tune",
                "--model",
                "next-item-lm",
                "--dataset",
                w / "data",
                "--out",
                w / "best.toml",
                "--trials",
                "1",
                *cli.TINY,
                *cli.QUICK,
            ],
            w / "best.toml",
        ),
        "meta-train": (
            ["meta-train", "--dataset", w / "cold", "--base", w / "cold-lm", "--out", w / "out", "--method", "finetune"],
            w / "out",
        ),
        "map-cold-items": (
            ["map-cold-items", "--model", w / "cold-items-lm", "--dataset", w / "cold-items", "--out", w / "out"],
            w / "out",
        ),
        "build-index": (["build-index", "--model", w / "lm", "--kind", "flat", "--threads", "1"], w / "lm" / "ann"),
        "export": (["export", "--model", w / "lm", "--out", w / "out"], w / "out"),
        "recommend": (["recommend", "--model", w / "lm", "--users", "all", "--out", w / "recs.parquet"], w / "recs.parquet"),
    }
    assert tuple(commands) == WRITERS, "WRITERS must name every writing command"
    return commands


@pytest.fixture(scope="module")
def cold_built(built: Path, cli: Cli) -> Path:
    """Beside `built`'s: <root>/cold (a cold-user split) and <root>/cold-lm, for meta-train; <root>/cold-items (a
    cold-item split) and <root>/cold-items-lm, for map-cold-items. One-epoch tiny LMs."""
    from llmrec.data import PrepareConfig, RawData, prepare

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", str(i), 1000 + t) for u in range(20) for t, i in enumerate(rng.choice(30, size=8, replace=False))]
    events = pl.DataFrame(rows, schema={"user": pl.String, "item": pl.String, "time": pl.Int64}, orient="row")
    raw = RawData(events=events, items=None, users=None, domain="generic", source_files=[])
    prepare(raw, PrepareConfig(split="cold-user", cold_user_fraction=0.3)).save(built / "cold")
    prepare(raw, PrepareConfig(split="cold-item", cold_item_fraction=0.2)).save(built / "cold-items")
    for data in ("cold", "cold-items"):
        result = cli.invoke("train", "--dataset", built / data, "--out", built / f"{data}-lm", *cli.TINY, *cli.QUICK)
        assert result.exit_code == 0, result.output
    return built


def _fake_text_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """map-cold-items without loading MiniLM: random unit text vectors (this test is about writing, not mapping)."""
    import llmrec.index

    def encode_items(items: pl.DataFrame, *args: object, **kwargs: object) -> np.ndarray:
        emb = np.random.default_rng(0).normal(size=(items.height + 1, 8)).astype(np.float32)
        emb[0] = 0.0
        return emb

    monkeypatch.setattr(llmrec.index, "SentenceTransformerEncoder", lambda *args, **kwargs: None)
    monkeypatch.setattr(llmrec.index, "encode_items", encode_items)


@pytest.mark.parametrize("command", WRITERS)
@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_an_unwritable_output_is_one_line(
    command: str, code: int, cold_built: Path, work: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    _events_csv(work / "events.csv")
    args, output = _writing_commands(work, cli)[command]
    _fake_text_encoder(monkeypatch)
    _refuse_mkdtemp(code, monkeypatch)
    result = cli.invoke(*args)
    cli.assert_user_error(result, str(work), os.strerror(code))
    assert not output.exists(), sorted(p.name for p in output.parent.iterdir())
    assert not [p.name for p in work.rglob("*") if ".tmp-" in p.name]


@pytest.mark.parametrize("command", ["prepare", "train"])
def test_a_full_disk_mid_write_leaves_nothing(command: str, work: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    _events_csv(work / "events.csv")
    args, _ = _writing_commands(work, cli)[command]
    monkeypatch.setattr(pl.DataFrame, "write_parquet", _disk_full)
    result = cli.invoke(*args)
    cli.assert_user_error(result, f"{work / 'out'}: No space left on device")
    assert not (work / "out").exists()
    assert not [p.name for p in work.iterdir() if p.name.startswith(".out")]


def _disk_full(self: pl.DataFrame, file: str | Path, *args: object, **kwargs: object) -> None:
    Path(file).write_bytes(b"PAR1 half")  # a part was written, then the disk filled up; polars says so like this:
    raise pl.exceptions.ComputeError("No space left on device (os error 28)")


def test_stale_temporaries_of_a_killed_run_are_removed(work: Path) -> None:
    from llmrec.atomic import atomic_directory

    dead = work / ".out.tmp-999999999-abc"  # a process id that no process has
    dead.mkdir()
    (dead / "half.parquet").write_bytes(b"PAR1")
    legacy = work / ".out.tmp-k2j3h4"  # the older naming, without a process id
    legacy.mkdir()
    alive = work / f".out.tmp-{os.getpid()}-xyz"  # a writer still at work
    alive.mkdir()
    other = work / ".other.tmp-999999999-abc"  # another output's: not ours to touch
    other.mkdir()
    with atomic_directory(work / "out") as tmp:
        (tmp / "f").write_text("done")
    assert not dead.exists() and not legacy.exists()
    assert alive.exists() and other.exists()
    assert (work / "out" / "f").read_text() == "done"


@pytest.mark.parametrize(
    "raised",
    [
        pl.exceptions.ComputeError("No space left on device (os error 28)"),  # polars' Rust writers
        OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device"),  # pyarrow
    ],
    ids=["polars", "pyarrow"],
)
def test_writer_io_errors_become_os_errors_naming_the_output(raised: Exception, tmp_path: Path) -> None:
    from llmrec.atomic import atomic_directory, atomic_file

    for writer in (atomic_directory, atomic_file):
        with pytest.raises(OSError) as caught, writer(tmp_path / "out"):
            raise raised
        assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(tmp_path / "out"))
        assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="unrelated"), atomic_file(tmp_path / "out"):
        raise ValueError("unrelated (os error 28)")  # not a writer's error: unchanged


def test_evaluate_takes_a_device(work: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    import torch

    cpu = cli.invoke("evaluate", "--model", work / "lm", "--dataset", work / "data", "--n-boot", "10", "--device", "cpu")
    assert cpu.exit_code == 0, cpu.output
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = cli.invoke("evaluate", "--model", work / "lm", "--dataset", work / "data", "--n-boot", "10", "--device", "cuda")
    cli.assert_user_error(result, "--device cuda", "no CUDA device")
