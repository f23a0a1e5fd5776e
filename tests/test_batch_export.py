"""Batch inference (`recommend --users --out`), the slim serving export (`llmrec export`, ONNX scorer), weight
file permissions and `--device`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data import PreparedDataset
from llmrec.recommend import Recommender
from llmrec.training import build_model, save_artifact

TINY_MODEL = {"max_seq_len": 8, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}
runner = CliRunner()


@pytest.fixture
def artifact(tiny_prepared: PreparedDataset, tmp_path: Path) -> Path:
    model = build_model(tiny_prepared, TINY_MODEL, seed=0)[0].eval()
    path = save_artifact(model, tiny_prepared, tmp_path / "model")
    (path / "train").mkdir()  # training state as `llmrec train` leaves it
    (path / "train" / "optimizer.safetensors").write_bytes(b"\0" * 1000)
    (path / "train" / "metrics.csv").write_text("epoch,loss\n1,2.0\n")
    return path


# ---- batch ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_batch_recommend_writes_one_row_per_user_and_rank(artifact: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"recs{suffix}"
    result = runner.invoke(
        app, ["recommend", "--model", str(artifact), "--users", "all", "--out", str(out), "-k", "3", "--chunk-size", "7"]
    )
    assert result.exit_code == 0, result.output
    table = (
        pl.read_parquet(out)
        if suffix == ".parquet"
        else pl.read_csv(out, schema_overrides={"user": pl.String, "item": pl.String})
    )
    assert table.columns == ["user", "rank", "item", "score", "fallback", "title", "categories"]  # the catalogue's, by default
    rec = Recommender.load(artifact)
    assert table.height == 3 * len(rec.histories)
    assert table["user"].unique(maintain_order=True).to_list() == list(rec.histories)
    for user in list(rec.histories)[:3]:  # the same lists as one-user recommend, history left out
        rows = table.filter(pl.col("user") == user)
        expected = rec.recommend(user=user, k=3)
        assert rows["item"].to_list() == [r.item_id for r in expected] and rows["rank"].to_list() == [1, 2, 3]
        np.testing.assert_allclose(rows["score"].to_numpy(), [r.score for r in expected], rtol=1e-6)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()


def test_batch_recommend_from_a_file_of_user_ids_and_its_errors(artifact: Path, tmp_path: Path) -> None:
    rec = Recommender.load(artifact)
    some = list(rec.histories)[:2]
    ids = tmp_path / "users.txt"
    ids.write_text("\n".join(some) + "\n\n")
    out = tmp_path / "recs.parquet"
    ok = runner.invoke(app, ["recommend", "--model", str(artifact), "--users", str(ids), "--out", str(out), "--include-seen"])
    assert ok.exit_code == 0, ok.output
    table = pl.read_parquet(out)
    assert table["user"].unique(maintain_order=True).to_list() == some and table.height == 20
    expected = rec.recommend(user=some[0], k=10, exclude_seen=False)
    assert table.filter(pl.col("user") == some[0])["item"].to_list() == [r.item_id for r in expected]

    ids.write_text("ghost\n")
    bad_args = ["--users", str(ids), "--out", str(tmp_path / "x.parquet"), "--strict"]
    bad = runner.invoke(app, ["recommend", "--model", str(artifact), *bad_args])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ") and "ghost" in bad.stderr
    assert not (tmp_path / "x.parquet").exists()
    for args, message in [
        (["--users", "all"], "--out"),
        (["--out", str(tmp_path / "y.parquet")], "--users"),
        (["--users", "all", "--out", str(tmp_path / "y.txt")], ".parquet or .csv"),
        (["--users", "all", "--out", str(tmp_path / "y.csv"), "--user", some[0]], "without --user"),
    ]:
        r = runner.invoke(app, ["recommend", "--model", str(artifact), *args])
        assert r.exit_code == 2 and message in r.stderr, (args, r.output)


def test_batch_recommend_refuses_a_user_file_that_is_not_utf8_and_a_zero_chunk(artifact: Path, tmp_path: Path) -> None:
    ids = tmp_path / "users.txt"
    ids.write_bytes("u01\nusér\n".encode("latin-1"))
    out = tmp_path / "recs.parquet"
    r = runner.invoke(app, ["recommend", "--model", str(artifact), "--users", str(ids), "--out", str(out)])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert r.stderr.strip().splitlines() == [f"error: {ids}: not UTF-8 text (line 2, byte offset 6); save the user ids as UTF-8"]
    r = runner.invoke(app, ["recommend", "--model", str(artifact), "--users", "all", "--out", str(out), "--chunk-size", "0"])
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == ["error: --chunk-size must be >= 1, got 0"]
    assert not out.exists()


# ---- export --------------------------------------------------------------------------------------------------
def test_export_drops_training_state_and_recommends_the_same(artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "serve"
    result = runner.invoke(app, ["export", "--model", str(artifact), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not (out / "train").exists() and (out / "model.safetensors").is_file()
    a, b = Recommender.load(artifact), Recommender.load(out)
    for user in list(a.histories)[:5]:
        assert a.recommend(user=user, k=10) == b.recommend(user=user, k=10)
    assert runner.invoke(app, ["export", "--model", str(artifact), "--out", str(artifact / "inside")]).exit_code == 2


def test_export_onnx_scores_match_pytorch(artifact: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "serve"
    result = runner.invoke(app, ["export", "--model", str(artifact), "--out", str(out), "--onnx"])
    assert result.exit_code == 0, result.output
    rec = Recommender.load(out)
    histories = [rec.histories[u] for u in list(rec.histories)[:6]] + [np.array([3], dtype=np.int64)]
    ids = rec._padded(histories)
    session = ort.InferenceSession(str(out / "scorer.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["scores"], {"item_ids": ids.numpy()})[0]
    with torch.no_grad():
        expected = rec.model.score(ids).numpy()
    assert got.shape == expected.shape == (len(histories), rec.n_items + 1)
    assert np.isneginf(got[:, 0]).all()
    np.testing.assert_allclose(got[:, 1:], expected[:, 1:], rtol=1e-4, atol=1e-4)


def test_export_onnx_that_the_exporter_cannot_convert_is_one_line_and_writes_nothing(
    artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Failed to convert the exported program to an ONNX model.\nstep 3/3 ... (long report)")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    out = tmp_path / "serve"
    result = runner.invoke(app, ["export", "--model", str(artifact), "--out", str(out), "--onnx"])
    assert result.exit_code == 2, result.output
    assert "could not convert" in result.stderr and "Failed to convert" in result.stderr
    assert "long report" not in result.stderr and "Traceback" not in result.output
    assert not out.exists()


# ---- permissions and device ----------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_artifact_files_have_normal_permissions(artifact: Path) -> None:
    # safetensors writes 0600 and mkdtemp makes 0700: an artifact must be readable like any written file
    mask = _umask()
    assert stat.S_IMODE((artifact / "model.safetensors").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((artifact / "config.json").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE(artifact.stat().st_mode) == 0o777 & ~mask


def test_device_cuda_without_cuda_is_a_one_line_error(artifact: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="no CUDA device"):
        Recommender.load(artifact, device="cuda")
    user = next(iter(Recommender.load(artifact).histories))
    for args in (
        ["recommend", "--model", str(artifact), "--user", user, "--device", "cuda"],
        ["recommend", "--model", str(artifact), "--users", "all", "--out", str(tmp_path / "r.csv"), "--device", "cuda"],
        ["serve", "--model", str(artifact), "--device", "cuda"],
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and r.stderr.startswith("error: ") and "CUDA" in r.stderr, (args, r.output)
        assert len(r.stderr.strip().splitlines()) == 1
    assert Recommender.load(artifact, device="auto").device == torch.device("cpu")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        Recommender.load(artifact, device="tpu")


@pytest.mark.gpu
def test_recommender_on_cuda_matches_cpu(artifact: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cpu, gpu = Recommender.load(artifact, device="cpu"), Recommender.load(artifact, device="cuda")
    assert gpu.device.type == "cuda"
    for user in list(cpu.histories)[:5]:
        a, b = cpu.recommend(user=user, k=10), gpu.recommend(user=user, k=10)
        assert [r.item_id for r in a] == [r.item_id for r in b]
        np.testing.assert_allclose([r.score for r in a], [r.score for r in b], rtol=1e-4, atol=1e-4)
    assert len(gpu.explain(user=next(iter(gpu.histories)), k=2)) == 2


@pytest.mark.gpu
def test_evaluation_on_cuda_matches_cpu(artifact: Path, tiny_prepared: PreparedDataset) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from llmrec.experiment import evaluate_model

    cpu = evaluate_model(artifact, tiny_prepared, n_boot=10, device="cpu")
    gpu = evaluate_model(artifact, tiny_prepared, n_boot=10, device="cuda")
    for split in ("valid", "test"):
        for metric in ("ndcg@10", "recall@10", "mrr"):
            assert gpu[split][metric] == pytest.approx(cpu[split][metric], abs=1e-6), (split, metric)


def test_export_onnx_ships_a_raw_id_helper_and_prints_no_third_party_warnings(artifact: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    import importlib.util
    import json

    out = tmp_path / "serve"
    result = runner.invoke(app, ["export", "--model", str(artifact), "--out", str(out), "--onnx"])
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and "warn" not in result.output.lower() and "[torch.onnx]" not in result.output
    assert json.loads((out / "onnx_items.json").read_text())[:3] == Recommender.load(out).raw_ids[:3]
    spec = importlib.util.spec_from_file_location("onnx_scorer_copy", out / "onnx_scorer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the shipped file: stdlib + numpy + onnxruntime only
    source = (out / "onnx_scorer.py").read_text()
    assert "import torch" not in source  # without llmrec either: tests/shop/test_rules_everywhere.py
    scorer = module.OnnxScorer(out)
    rec = Recommender.load(out, device="cpu")
    user = next(iter(rec.histories))
    history = [rec.raw_ids[i - 1] for i in rec.histories[user]]  # longer than max_seq_len: cut, like the model
    got = scorer.recommend(history, k=5)
    want = rec.recommend(history=history, k=5)
    assert [i for i, _ in got] == [r.item_id for r in want]
    np.testing.assert_allclose([s for _, s in got], [r.score for r in want], rtol=1e-4, atol=1e-4)
    assert len(scorer.recommend([], k=3)) == 3
    with pytest.raises(KeyError, match="nope"):
        scorer.recommend(["nope"], strict=True)
    with pytest.warns(UserWarning, match="ignored unknown item ids: nope"):  # skipped, as the Recommender does
        assert [i for i, _ in scorer.recommend(["nope", history[-1]], k=5)] == [
            r.item_id for r in rec.recommend(history=[history[-1]], k=5)
        ]
