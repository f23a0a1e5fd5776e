"""Preparation time and peak memory: real datasets and a generated event log.

Usage:
  python benchmarks/prepare_bench.py generate OUT.csv N_EVENTS    # synthetic CSV: user_id,item_id,timestamp
  python benchmarks/prepare_bench.py run -- <llmrec data prepare arguments>
`run` executes `llmrec data prepare ...` in a child process and prints wall time and the child's peak RSS.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl


def generate(out: Path, n_events: int, seed: int = 0) -> None:
    """Zipf-like items, ~20 events per user, random timestamps; written in 1M-row chunks."""
    rng = np.random.default_rng(seed)
    n_users = max(1, n_events // 20)
    n_items = max(10, n_events // 100)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        for start in range(0, n_events, 1_000_000):
            n = min(1_000_000, n_events - start)
            df = pl.DataFrame(
                {
                    "user_id": rng.integers(0, n_users, n),
                    "item_id": np.minimum(rng.zipf(1.3, n), n_items),
                    "timestamp": rng.integers(1_500_000_000, 1_700_000_000, n),
                }
            )
            df.write_csv(f, include_header=start == 0)


def run(args: list[str]) -> None:
    llmrec = str(Path(sys.executable).parent / "llmrec")
    t0 = time.perf_counter()
    proc = subprocess.run([llmrec, "data", "prepare", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(proc.stdout.strip(), proc.stderr.strip()[-500:], sep="\n")
    print(json.dumps({"args": args, "rc": proc.returncode, "wall_s": round(wall, 2), "peak_rss_gib": round(rss, 3)}))


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        generate(Path(sys.argv[2]), int(float(sys.argv[3])))
    elif sys.argv[1] == "run":
        run(sys.argv[3:] if sys.argv[2] == "--" else sys.argv[2:])
    else:
        sys.exit(__doc__)
