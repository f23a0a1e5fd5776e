"""Streaming preparation at 1M / 10M / 50M events: wall time and peak RSS, with a plot.

Usage:
  python benchmarks/prepare_stream.py generate DIR N_EVENTS        # partitioned Parquet (one file per ~1M events)
  python benchmarks/prepare_stream.py run [--sizes 1e6,10e6,50e6] [--in-memory 1e6,10e6] [--work DIR] [--keep]
  python benchmarks/prepare_stream.py plot                          # redraw the PNG from the JSON
  python benchmarks/prepare_stream.py profile DIR                   # per-step time and peak RSS, in this process

`run` generates each size under --work (default .tmp/prepare_stream), prepares it with
`llmrec data prepare --streaming` (5-core, leave-one-out) in a child process, and records the child's wall time
and peak RSS (``os.wait4``: the resource usage of that one child). The in-memory path (`llmrec data prepare`,
same options, the parts concatenated into one file first, untimed) runs on the sizes given to --in-memory, and
its output is checked to equal the streaming one. Results go to docs/scaling/prepare_stream.json and
docs/scaling/prepare_stream.png; the generated data is deleted afterwards unless --keep.

The generated log looks like an append-only event log: Parquet files in time order (file k holds the k-th time
window), users with a heavy-tailed activity (a few users with thousands of events, most with a handful), items
with Zipf popularity, and 1% re-sent (duplicate) events. It is written chunk by chunk, so generating 50M events
needs only one chunk in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "scaling" / "prepare_stream.json"
PLOT = ROOT / "docs" / "scaling" / "prepare_stream.png"
CHUNK = 1_000_000  # events per generated Parquet file
PREPARE_ARGS = ["--k-core", "5", "--split", "loo"]


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, dtype=np.float64)
    return cdf / cdf[-1]


def generate(out: Path, n_events: int, seed: int = 0) -> None:
    """Write `n_events` synthetic events as out/part-00000.parquet, ... (user_id, item_id, timestamp: Int64)."""
    rng = np.random.default_rng(seed)
    n_users = max(1, n_events // 20)  # 20 events per user on average
    n_items = max(10, n_events // 100)
    # Heavy-tailed user activity (Pareto, shape 1.5) and Zipf item popularity (exponent 1.1), both shuffled so
    # that ids carry no popularity information.
    user_cdf = _cdf(rng.permutation(rng.pareto(1.5, n_users) + 1.0))
    item_cdf = _cdf(rng.permutation(1.0 / np.arange(1, n_items + 1) ** 1.1))
    out.mkdir(parents=True, exist_ok=True)
    t0, window = 1_600_000_000, 86_400  # one file per "day"
    for k, start in enumerate(range(0, n_events, CHUNK)):
        n = min(CHUNK, n_events - start)
        n_new = n - n // 100
        users = np.searchsorted(user_cdf, rng.random(n_new)).astype(np.int64)
        items = np.searchsorted(item_cdf, rng.random(n_new)).astype(np.int64)
        stamps = np.sort(rng.integers(t0 + k * window, t0 + (k + 1) * window, n_new))
        resent = np.sort(rng.integers(0, n_new, n - n_new))  # 1% duplicates, right after their original
        order = np.argsort(np.concatenate([np.arange(n_new), resent]), kind="stable")
        pick = np.concatenate([np.arange(n_new), resent])[order]
        pl.DataFrame({"user_id": users[pick], "item_id": items[pick], "timestamp": stamps[pick]}).write_parquet(
            out / f"part-{k:05d}.parquet"
        )


def _run_child(args: list[str], log: Path) -> tuple[float, float, int, str]:
    """(wall s, peak RSS GiB, return code, output tail) of one `llmrec` run in a child process.

    os.wait4 gives the resource usage of that one child (RUSAGE_CHILDREN would be the maximum over all of them).
    """
    llmrec = str(Path(sys.executable).parent / "llmrec")
    with log.open("w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen([llmrec, *args], stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 2**20, proc.returncode, log.read_text().strip()[-800:]  # ru_maxrss: KiB


def _same_dataset(a: Path, b: Path) -> bool:
    """Same sequences, users, items, steps and statistics (the manifests differ in source and engine)."""
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    if any(ma[k] != mb[k] for k in ("prepare", "steps", "split", "stats")):
        return False
    files = ("sequences.parquet", "users.parquet", "items.parquet")
    for f in files:
        x, y = pl.read_parquet(a / f), pl.read_parquet(b / f)
        if not x.sort(x.columns[0]).equals(y.sort(y.columns[0])):  # first column: user_idx / user / item_idx
            return False
    return True


def run(sizes: list[int], in_memory: list[int], work: Path, keep: bool) -> None:
    results: list[dict[str, object]] = []
    for n in sorted(sizes):
        data, out = work / f"events-{n}", work / f"prepared-{n}"
        t0 = time.perf_counter()
        generate(data, n)
        gen_s = time.perf_counter() - t0
        size_mb = sum(f.stat().st_size for f in data.iterdir()) / 1e6
        cols = "user=user_id,item=item_id,time=timestamp"
        runs = [("streaming", ["--streaming"])] + ([("in-memory", [])] if n in in_memory else [])
        for engine, flag in runs:
            # The in-memory path reads one file: give it the parts concatenated (not timed).
            src = data
            if engine == "in-memory":
                src = work / f"events-{n}.parquet"
                pl.scan_parquet(data).sink_parquet(src)
            args = ["data", "prepare", "--events", str(src), "--format", "parquet", "--columns", cols, *flag]
            wall, rss, rc, tail = _run_child([*args, *PREPARE_ARGS, "--out", str(out)], work / "child.log")
            print(tail, flush=True)
            if rc != 0:
                sys.exit(f"{engine} {n:,}: exit code {rc}")
            stats = json.loads((out / "manifest.json").read_text())["stats"]
            row = {
                "events": n,
                "engine": engine,
                "wall_s": round(wall, 2),
                "peak_rss_gib": round(rss, 3),
                "input_mb": round(size_mb, 1),
                "users": stats["users"],
                "items": stats["items"],
                "interactions": stats["interactions"],
                "generate_s": round(gen_s, 1),
            }
            if engine == "in-memory":  # the two engines must write the same dataset
                row["same_as_streaming"] = _same_dataset(out, work / "streaming-out")
                src.unlink()
            print(json.dumps(row), flush=True)
            results.append(row)
            if engine == "streaming" and n in in_memory:
                out.rename(work / "streaming-out")
            else:
                shutil.rmtree(out)
        shutil.rmtree(work / "streaming-out", ignore_errors=True)
        if not keep:
            shutil.rmtree(data)
    (work / "child.log").unlink()
    payload = {
        "command": "python benchmarks/prepare_stream.py run " + " ".join(sys.argv[2:]),
        "prepare_args": PREPARE_ARGS,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"polars {pl.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    plot()


def profile(data: Path, out: Path) -> None:
    """Prepare `data` in this process, printing each step's time and peak RSS (the peak is reset between steps
    through /proc/self/clear_refs, Linux only)."""
    from llmrec.data import ColumnMap, PrepareConfig
    from llmrec.data.streaming import prepare_streaming

    def rss() -> tuple[float, float]:  # (peak since the last reset, now) in GiB
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        return int(fields["VmHWM"].split()[0]) / 2**20, int(fields["VmRSS"].split()[0]) / 2**20

    current: list[object] = ["start", time.perf_counter()]

    def step(message: str) -> None:
        peak, now = rss()
        print(f"{current[0]:<34} {time.perf_counter() - current[1]:6.1f} s  peak {peak:.2f} GiB  after {now:.2f} GiB")  # type: ignore[operator]
        Path("/proc/self/clear_refs").write_text("5")
        current[:] = [message, time.perf_counter()]

    columns = ColumnMap(user="user_id", item="item_id", time="timestamp")
    prepare_streaming(data, "parquet", out, columns=columns, config=PrepareConfig(user_core=5, item_core=5), progress=step)
    step("end")
    shutil.rmtree(out)


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    payload = json.loads(RESULTS.read_text())
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for engine, style in (("streaming", "o-"), ("in-memory", "s--")):
        rows = sorted((r for r in payload["results"] if r["engine"] == engine), key=lambda r: r["events"])
        if not rows:
            continue
        x = [r["events"] / 1e6 for r in rows]
        axes[0].plot(x, [r["wall_s"] for r in rows], style, label=engine)
        axes[1].plot(x, [r["peak_rss_gib"] for r in rows], style, label=engine)
    axes[1].axhline(6.0, color="grey", lw=0.8, ls=":", label="6 GiB target")
    for ax, ylabel in zip(axes, ("wall time (s)", "peak RSS (GiB)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("events (millions)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("llmrec data prepare: 5-core, leave-one-out, partitioned Parquet input")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def _sizes(text: str) -> list[int]:
    return [int(float(s)) for s in text.split(",") if s.strip()]


if __name__ == "__main__":
    os.environ.setdefault("MPLCONFIGDIR", str(ROOT / ".tmp" / "mpl"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("out", type=Path)
    g.add_argument("n_events", type=float)
    r = sub.add_parser("run")
    r.add_argument("--sizes", type=_sizes, default=_sizes("1e6,10e6,50e6"))
    r.add_argument("--in-memory", type=_sizes, default=_sizes("1e6,10e6"))
    r.add_argument("--work", type=Path, default=ROOT / ".tmp" / "prepare_stream")
    r.add_argument("--keep", action="store_true")
    sub.add_parser("plot")
    pr = sub.add_parser("profile")
    pr.add_argument("data", type=Path)
    a = parser.parse_args()
    if a.cmd == "generate":
        generate(a.out, int(a.n_events))
    elif a.cmd == "run":
        run(a.sizes, a.in_memory, a.work, a.keep)
    elif a.cmd == "profile":
        profile(a.data, ROOT / ".tmp" / "prepare_stream_profile")
    else:
        plot()
