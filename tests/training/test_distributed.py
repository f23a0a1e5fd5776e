"""Data-parallel training: the per-rank loss weighting is exact, and 2 processes under torchrun train like 1.

The end-to-end tests launch real processes (`python -m torch.distributed.run`, gloo backend on CPU) on the tiny
fixture. Dropout is 0 there so the two runs see identical computations up to floating-point summation order;
the tolerance below is for that reordering only.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.data.dataset import PreparedDataset
from llmrec.data.sequences import bucketed_batches, training_windows
from llmrec.models.next_item_lm import NextItemLM, NextItemLMConfig
from llmrec.training.distributed import DistContext, shard_rows
from llmrec.training.loop import _local_rows

# Per-step training loss of the 2-process run vs the 1-process run (same global batch, seed, dropout 0).
LOSS_TOLERANCE = 1e-4


def _grads(model: NextItemLM) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("loss", ["ce", "sampled", "bce"])
@pytest.mark.parametrize("world", [2, 3])
def test_rank_weights_make_the_averaged_gradient_equal_the_global_one(
    tiny_prepared: PreparedDataset, loss: str, world: int
) -> None:
    windows = training_windows(tiny_prepared.train_sequences(), 8)
    batch = max(bucketed_batches(windows, 7, torch.Generator().manual_seed(0)), key=lambda b: b.item_ids.shape[0])
    assert batch.item_ids.shape[0] == 7  # uneven shards for 2 and 3 ranks
    cfg = NextItemLMConfig(
        n_items=tiny_prepared.n_items,
        max_seq_len=8,
        d_model=16,
        n_heads=2,
        d_ff=32,
        dropout=0.0,
        emb_dropout=0.0,
        loss=loss,
        n_negatives=5,
    )
    torch.manual_seed(0)
    model = NextItemLM(cfg)
    if loss == "sampled":
        model.set_item_popularity(torch.from_numpy(tiny_prepared.item_popularity()))

    torch.manual_seed(1)  # the same negatives for every call below
    out = model(batch)
    assert out.loss is not None
    out.loss.backward()
    want_loss, want = out.loss.item(), _grads(model)

    total: dict[str, torch.Tensor] = {}
    global_loss = 0.0
    for rank in range(world):
        model.zero_grad(set_to_none=True)
        local, weight = _local_rows(batch, DistContext(rank=rank, world_size=world))
        assert local.item_ids.shape[0] == len(range(rank, 7, world))
        torch.manual_seed(1)
        out = model(local)
        assert out.loss is not None
        (out.loss * weight).backward()
        global_loss += out.loss.item() * weight / world
        for n, g in _grads(model).items():
            total[n] = total.get(n, torch.zeros_like(g)) + g / world  # what DDP's all-reduce average computes
    if loss != "bce":  # shared negatives are the same draw in every shard; BCE draws one per position, so they differ
        assert global_loss == pytest.approx(want_loss, rel=1e-5)
        for n, g in want.items():
            torch.testing.assert_close(total[n], g, rtol=1e-4, atol=1e-6, msg=n)
    assert set(total) == set(want)


def test_a_rank_without_rows_borrows_one_with_weight_zero(tiny_prepared: PreparedDataset) -> None:
    windows = training_windows(tiny_prepared.train_sequences(), 8)[:1]
    batch = next(bucketed_batches(windows, 4, torch.Generator().manual_seed(0)))
    local, weight = _local_rows(batch, DistContext(rank=1, world_size=2))
    assert local.item_ids.shape[0] == 1 and weight == 0.0
    local0, weight0 = _local_rows(batch, DistContext(rank=0, world_size=2))
    assert local0.item_ids.shape[0] == 1 and weight0 == 2.0  # 1 row holds all positions: n_local * W / N = 2


def test_shards_cover_every_row_once() -> None:
    for n in (0, 1, 5, 8):
        for world in (1, 2, 3):
            rows = sorted(i for r in range(world) for i in range(n)[shard_rows(n, DistContext(rank=r, world_size=world))])
            assert rows == list(range(n))


def _steps(run: Path) -> list[dict[str, float]]:
    with open(run / "steps.csv", newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _train(
    data: Path, out: Path, nproc: int, *extra: str, resume: bool = False, model: str = "next-item-lm"
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "llmrec.cli", "train"]
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            "llmrec.cli",
            "train",
        ]
    cmd += ["--dataset", str(data), "--out", str(out), "--model", model, "--device", "cpu", "--threads", "1"]
    cmd += ["--set", "model.d_model=16", "--set", "model.n_heads=2", "--set", "model.d_ff=32", "--set", "model.max_seq_len=8"]
    cmd += ["--set", "model.dropout=0.0", "--set", "model.emb_dropout=0.0", "--set", "train.batch_size=6"]
    cmd += ["--set", "train.refit_on_valid=false", "--set", "train.patience=100", *extra]
    if resume:
        cmd.append("--resume")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, check=False)


@pytest.fixture
def tiny_dir(tiny_prepared: PreparedDataset, tmp_path: Path) -> Path:
    return tiny_prepared.save(tmp_path / "data")


@pytest.mark.parametrize("model", ["next-item-lm", "tvrec"])  # causal windows; one target per prefix
def test_two_processes_train_like_one_and_only_rank0_writes(tiny_dir: Path, tmp_path: Path, model: str) -> None:
    one = _train(tiny_dir, tmp_path / "one", 1, "--set", "train.epochs=3", model=model)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _train(tiny_dir, tmp_path / "two", 2, "--set", "train.epochs=3", model=model)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("trained ") == 1  # rank 1 prints nothing
    assert json.loads((tmp_path / "two" / "training.json").read_text())["world_size"] == 2

    a, b = _steps(tmp_path / "one" / "train"), _steps(tmp_path / "two" / "train")
    assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) >= 6
    diff = np.abs(np.array([r["loss"] for r in a]) - np.array([r["loss"] for r in b]))
    assert diff.max() < LOSS_TOLERANCE, diff
    assert a[-1]["loss"] < a[0]["loss"]  # it trained

    # validation metrics were reduced over both ranks' users: the same as one process computes
    with open(tmp_path / "one" / "train" / "metrics.csv", newline="") as f:
        m1 = list(csv.DictReader(f))
    with open(tmp_path / "two" / "train" / "metrics.csv", newline="") as f:
        m2 = list(csv.DictReader(f))
    assert [float(r["valid_ndcg@10"]) for r in m1] == pytest.approx([float(r["valid_ndcg@10"]) for r in m2], abs=1e-6)
    # the artifact is complete and loads; no stray per-rank files
    from llmrec import Recommender

    rec = Recommender.load(tmp_path / "two")
    assert len(rec.recommend(history=[rec.items["item"][0]], k=3)) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_resume_under_a_different_world_size(tiny_dir: Path, tmp_path: Path) -> None:
    """2 processes train 2 of 4 epochs (a run cut short), 1 process resumes it: same curve as 1 process throughout."""
    ref = _train(tiny_dir, tmp_path / "ref", 1, "--set", "train.epochs=4")
    assert ref.returncode == 0, ref.stderr[-3000:]
    cut = _train(tiny_dir, tmp_path / "cut", 2, "--set", "train.epochs=4", "--set", "train.max_minutes=0.0")
    assert cut.returncode == 0, cut.stderr[-3000:]
    assert len({r["epoch"] for r in _steps(tmp_path / "cut" / "train")}) == 1  # the time budget stopped it after epoch 1
    res = _train(tiny_dir, tmp_path / "cut", 1, "--set", "train.epochs=4", resume=True)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _steps(tmp_path / "ref" / "train"), _steps(tmp_path / "cut" / "train")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    diff = np.abs(np.array([r["loss"] for r in a]) - np.array([r["loss"] for r in b]))
    assert diff.max() < LOSS_TOLERANCE, diff


def test_environment_without_a_launcher_is_one_cpu_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmrec.training import distributed

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    try:
        ctx = distributed.init_from_env("cpu")
        assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_main, ctx.device.type) == (0, 1, False, True, "cpu")
        assert distributed.current() == ctx
        assert distributed.all_reduce_sum([1.5, 2.0], ctx) == [1.5, 2.0]
        assert distributed.gather_in_order([3, 4], 2, ctx) == [3, 4]
    finally:
        distributed.shutdown()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        distributed.init_from_env("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match="RANK=5 is outside"):
        distributed.init_from_env("cpu")
    with pytest.raises(ValueError, match="device must be"):
        distributed.init_from_env("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):  # a user error: the CLI exits 2 with one line
            distributed.init_from_env("cuda")
