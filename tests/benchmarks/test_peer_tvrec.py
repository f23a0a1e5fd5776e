"""TV-Rec's published Beauty checkpoint scored by llmrec's evaluator reproduces TV-Rec's own logged numbers.

Opt-in: needs a checkout of github yehjin-shin/TV-Rec (never part of llmrec) named by LLMREC_TVREC_CHECKOUT, and
the beauty data set. The equivalence shows that llmrec's full-ranking, seen-excluded evaluation is the protocol of
the published table, so a gap between llmrec and TV-Rec comes from training, not from scoring.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECKOUT = os.environ.get("LLMREC_TVREC_CHECKOUT")


@pytest.mark.slow
@pytest.mark.skipif(CHECKOUT is None, reason="LLMREC_TVREC_CHECKOUT names no TV-Rec checkout")
def test_tvrec_checkpoint_scored_by_llmrec_matches_its_log(tmp_path: Path) -> None:
    assert CHECKOUT is not None
    prepared = tmp_path / "beauty"
    subprocess.run(
        [sys.executable, "-m", "llmrec.cli", "data", "prepare", "--dataset", "beauty", "--out", str(prepared)],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/peers/tvrec.py"), "checkpoint", CHECKOUT, str(prepared), "--final"],
        check=True,
        capture_output=True,
        text=True,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    # TV-Rec's output/TVRec_Beauty_best.log: best validation NDCG@10 0.0735 / HR@10 0.1226, test 0.0608 / 0.1017
    assert res["valid_exclude_seen"]["ndcg@10"] == pytest.approx(0.0735, abs=1e-4)
    assert res["valid_exclude_seen"]["recall@10"] == pytest.approx(0.1226, abs=1e-4)
    assert res["test_exclude_seen"]["ndcg@10"] == pytest.approx(0.0608, abs=1e-4)
    assert res["test_exclude_seen"]["recall@10"] == pytest.approx(0.1017, abs=1e-4)


PEER_LOG = """\
2025-05-23 10:00:00,000 - Total Parameters: 854208
2025-05-23 10:02:00,000 - {'epoch': 0, 'rec_loss': '8.9422'}
2025-05-23 10:02:07,500 - {'Epoch': 0, 'HR@5': '0.0212', 'NDCG@5': '0.0133', 'HR@10': '0.0323', 'NDCG@10': '0.0169', 'HR@20': '0.0481', 'NDCG@20': '0.0209'}
2025-05-23 10:02:07,501 - Validation score increased.  Saving model ...
2025-05-23 10:04:00,000 - {'epoch': 1, 'rec_loss': '8.1890'}
2025-05-23 10:04:07,000 - {'Epoch': 1, 'HR@5': '0.0329', 'NDCG@5': '0.0213', 'HR@10': '0.0520', 'NDCG@10': '0.0274', 'HR@20': '0.0803', 'NDCG@20': '0.0345'}
2025-05-23 10:06:00,000 - {'epoch': 2, 'rec_loss': '7.7965'}
2025-05-23 10:06:07,000 - {'Epoch': 2, 'HR@5': '0.0300', 'NDCG@5': '0.0200', 'HR@10': '0.0510', 'NDCG@10': '0.0280', 'HR@20': '0.0790', 'NDCG@20': '0.0340'}
2025-05-23 10:06:07,001 - Early stopping
2025-05-23 10:06:07,002 - ---------------Test Score---------------
2025-05-23 10:06:10,000 - {'Epoch': 0, 'HR@5': '0.0300', 'NDCG@5': '0.0190', 'HR@10': '0.0450', 'NDCG@10': '0.0240', 'HR@20': '0.0700', 'NDCG@20': '0.0300'}
"""


def test_a_peer_log_is_summarised_and_written_as_llmrec_metrics(tmp_path: Path) -> None:
    """Epochs numbered from 1 with their seconds, the best epoch by the peer's own criterion (valid NDCG@20, not
    NDCG@10), the test line after "Test Score", and metrics.csv rows that `benchmarks/plot_curves.py` reads."""
    import csv

    log = tmp_path / "peer.log"
    log.write_text(PEER_LOG)
    out = tmp_path / "metrics.csv"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/peers/tvrec.py"), "summary", str(log), "--metrics-csv", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    res = json.loads(done.stdout)
    assert [r["epoch"] for r in res["epochs"]] == [1, 2, 3]
    assert [r["train_s"] for r in res["epochs"]] == [120.0, 112.5, 113.0]
    assert [r["valid_s"] for r in res["epochs"]] == [7.5, 7.0, 7.0]
    assert res["best_epoch"] == 2  # NDCG@20 0.0345 > 0.0340, although epoch 3 has the higher NDCG@10
    assert res["test"]["ndcg@10"] == 0.024 and res["test"]["hr@10"] == 0.045
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["valid_ndcg@10"], r["valid_recall@10"]) for r in rows] == [
        ("1", "0.0169", "0.0323"), ("2", "0.0274", "0.052"), ("3", "0.028", "0.051"),
    ]  # fmt: skip
