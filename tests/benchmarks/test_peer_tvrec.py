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
