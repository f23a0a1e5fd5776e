"""Approximate top-k retrieval on a generated 1M-item catalogue: flat vs IVF vs HNSW (llmrec.index.ann).

    flock .tmp/heavy.lock .venv/bin/python benchmarks/ann_retrieval.py run --out .tmp/ann/results.json
    .venv/bin/python benchmarks/ann_retrieval.py plot .tmp/ann/results.json --png docs/scaling/ann_recall_latency.png

For each catalogue ("clustered", the realistic one, and "gaussian", the worst case), with d = 64 (the next-item
LM's default width):
1. exact top-10 of `--queries` evaluation queries with a flat index (the ground truth);
2. for flat, ivf and hnsw (ItemIndex.build, search parameter calibrated on 1,000 *other* queries of the same
   distribution to recall@10 >= `--target-recall`): build time and memory (`--build-threads` threads), recall@10
   against exact, single-query latency p50/p99 (one query per call, as the service's worker does; ItemIndex.search
   with its Python filtering included) and batched throughput (batches of 64, the service's max_batch), each at
   1 and 2 FAISS threads;
3. a sweep of nprobe / efSearch (recall@10 and 1-thread single-query p50/p99 on `--sweep-queries` queries) for the
   indexes above and for the same kinds built on inner product directly (mips="inner-product"), for the curve;
4. (clustered only) end to end through Recommender.recommend_batch with a NextItemLM whose item table is the
   catalogue: one request, k = 10, full scoring vs the calibrated indexes (encode + search + exact re-score).

The clustered catalogue imitates what the trained next-item LMs in runs/ (ml-100k, lastfm; d = 64) look like;
`describe` prints the same statistics for a real artifact and for the generator:
- item vectors are cluster centre + within-cluster noise, both drawn with a decaying spectrum (std of the k-th
  principal axis ∝ k^-0.75, in a random rotation), so that the top-10 principal components hold ~87% of the
  variance (trained tables: 85-87%); 2·√N clusters (2,000 for 1M) with Zipf(0.8) sizes;
- item popularity is Zipf (rank r: log-popularity −log r); its standardised value z times 0.2 is added along one
  shared "popularity" direction u, and every query leans towards u (weight 0.5 after normalising), so that the
  exact top-10 items sit at the ~94th popularity percentile (trained ml-100k model: 96th, lastfm: 92nd);
- item norms: the median is scaled to 0.65 (trained: 0.66 and 0.62), 5th-95th percentile 0.42-1.08 (trained:
  0.49-0.94 and 0.44-0.82);
- queries ("users"): a Dirichlet mix of 1-3 cluster centres (clusters drawn by size), plus noise of half the
  spread, normalised, plus 0.5·u, scaled to norm 10 (the trained models' last hidden states: norm 10-11).
The Gaussian catalogue has no structure at all: items and queries i.i.d. N(0, I/d) (norm ≈ 1).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from llmrec.index.ann import ItemIndex, recall_at_k  # noqa: E402

K = 10
SERVICE_BATCH = 64


# ---- catalogues ----------------------------------------------------------------------------------------------
@dataclass
class Catalogue:
    name: str
    table: np.ndarray  # [N+1, D] float32, row 0 = PAD (zeros)
    popularity_rank: np.ndarray  # [N] 1 = most popular (clustered only; Gaussian: a random permutation)
    queries: Callable[[int, int], np.ndarray]  # (n, seed) -> [n, D] float32


def clustered_catalogue(n: int, d: int, seed: int = 0) -> Catalogue:
    rng = np.random.default_rng(seed)
    n_clusters = int(2 * np.sqrt(n))
    std = np.arange(1, d + 1) ** -0.75  # [D] decaying spectrum: a few dominant directions, as in trained tables
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0]  # [D, D]
    centres = (rng.standard_normal((n_clusters, d)) * std) @ rotation.T  # [C, D]
    cluster_p = np.arange(1, n_clusters + 1) ** -0.8
    cluster_p /= cluster_p.sum()
    items = np.empty((n, d), dtype=np.float32)
    rank = rng.permutation(n) + 1  # [N] popularity rank of each item
    z = -np.log(rank)
    z = (z - z.mean()) / z.std()  # standardised log-popularity
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)  # the shared popularity direction
    for start in range(0, n, 200_000):  # in chunks: float64 temporaries of 1M x 64 are 0.5 GB each
        stop = min(n, start + 200_000)
        g = rng.choice(n_clusters, stop - start, p=cluster_p)
        noise = (rng.standard_normal((stop - start, d)) * std) @ rotation.T
        items[start:stop] = centres[g] + 0.5 * noise + 0.2 * z[start:stop, None] * u
    items *= 0.65 / np.median(np.linalg.norm(items, axis=1))

    def queries(m: int, qseed: int) -> np.ndarray:
        r = np.random.default_rng(qseed)
        q = np.empty((m, d))
        for i, n_interests in enumerate(r.integers(1, 4, size=m)):
            chosen = r.choice(n_clusters, n_interests, p=cluster_p)
            q[i] = r.dirichlet(np.ones(n_interests)) @ centres[chosen]
        q += 0.5 * (r.standard_normal((m, d)) * std) @ rotation.T
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        q += 0.5 * u
        return (10.0 * q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)

    table = np.vstack([np.zeros((1, d), dtype=np.float32), items])
    return Catalogue("clustered", table, rank, queries)


def gaussian_catalogue(n: int, d: int, seed: int = 0) -> Catalogue:
    rng = np.random.default_rng(seed)
    items = (rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d)).astype(np.float32)

    def queries(m: int, qseed: int) -> np.ndarray:
        return (np.random.default_rng(qseed).standard_normal((m, d)) / np.sqrt(d)).astype(np.float32)

    table = np.vstack([np.zeros((1, d), dtype=np.float32), items])
    return Catalogue("gaussian", table, rng.permutation(n) + 1, queries)


def describe_vectors(items: np.ndarray, queries: np.ndarray, rank: np.ndarray | None) -> dict[str, Any]:
    """Statistics to compare a catalogue with a trained model: norms, spectrum, popularity of the exact top-10."""
    norms = np.linalg.norm(items, axis=1)
    sample = items[np.random.default_rng(0).choice(len(items), size=min(20_000, len(items)), replace=False)]
    ev = np.linalg.svd(sample - sample.mean(0), compute_uv=False) ** 2
    out: dict[str, Any] = {
        "n_items": len(items),
        "item_norm_p5_p50_p95": np.percentile(norms, [5, 50, 95]).round(2).tolist(),
        "variance_in_top10_pcs": round(float(ev[:10].sum() / ev.sum()), 3),
        "query_norm_p50": round(float(np.median(np.linalg.norm(queries, axis=1))), 2),
    }
    if rank is not None:
        top = np.argsort(-(queries[:300] @ items.T), axis=1)[:, :K]  # [Q, K] positions 0..N-1
        out["top10_popularity_percentile_median"] = round(float(np.median(1 - (rank[top] - 1) / len(items))), 3)
        order = np.argsort(np.argsort(norms))
        out["spearman_norm_popularity"] = round(float(np.corrcoef(order, -rank)[0, 1]), 3)
    return out


# ---- measurements ---------------------------------------------------------------------------------------------
def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _threads(n: int) -> None:
    import faiss

    faiss.omp_set_num_threads(n)


def single_query_latency(index: ItemIndex, queries: np.ndarray, warmup: int = 50) -> dict[str, float]:
    """One query per search call: p50/p99/mean in ms over all `queries` (after `warmup` untimed calls)."""
    for i in range(min(warmup, len(queries))):
        index.search(queries[i : i + 1], K)
    times = np.empty(len(queries))
    for i in range(len(queries)):
        started = time.perf_counter()
        index.search(queries[i : i + 1], K)
        times[i] = time.perf_counter() - started
    ms = times * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def batched_throughput(index: ItemIndex, queries: np.ndarray, batch: int = SERVICE_BATCH) -> float:
    """Queries per second, searching `queries` in batches of `batch`."""
    index.search(queries[:batch], K)
    started = time.perf_counter()
    for i in range(0, len(queries), batch):
        index.search(queries[i : i + batch], K)
    return len(queries) / (time.perf_counter() - started)


def index_bytes(index: ItemIndex) -> int:
    import faiss

    return int(faiss.serialize_index(index.index).nbytes)


def sweep(index: ItemIndex, values: list[int], queries: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
    """Recall@10 and 1-thread single-query latency of `index` at each search parameter value."""
    points = []
    _threads(1)
    for value in values:
        twin = index.with_search_parameter(value)
        recall = recall_at_k(twin.search(queries, K)[1], truth)
        points.append({"value": value, "recall": recall, **single_query_latency(twin, queries, warmup=20)})
        print(
            f"    {index.kind}/{index.info.mips} {value:>5}: recall {recall:.4f}  p99 {points[-1]['p99_ms']:.3f} ms", flush=True
        )
        if recall >= 0.9999:  # nothing left to gain
            break
    return points


def bench_catalogue(cat: Catalogue, args: argparse.Namespace) -> dict[str, Any]:
    n = cat.table.shape[0] - 1
    calibration = cat.queries(1000, 1)  # [1000, D] for ItemIndex.build
    queries = cat.queries(args.queries, 2)  # [Q, D] held out: every reported recall and latency
    result: dict[str, Any] = {"catalogue": cat.name, "n_items": n, "dim": cat.table.shape[1], "n_queries": len(queries)}
    result["description"] = describe_vectors(cat.table[1:], queries, cat.popularity_rank if cat.name == "clustered" else None)
    print(cat.name, json.dumps(result["description"]), flush=True)

    _threads(args.build_threads)
    started = time.perf_counter()
    truth = ItemIndex.build(cat.table, "flat").search(queries, K)[1]  # [Q, K] exact
    result["exact_seconds"] = time.perf_counter() - started

    kinds: dict[str, ItemIndex] = {}
    result["indexes"] = {}
    for name, kind, mips in [
        ("flat", "flat", "l2-reduction"),
        ("ivf", "ivf", "l2-reduction"),
        ("hnsw", "hnsw", "l2-reduction"),
        ("ivf-ip", "ivf", "inner-product"),
        ("hnsw-ip", "hnsw", "inner-product"),
    ]:
        is_variant = name.endswith("-ip")
        if is_variant and not args.ip_variants:
            continue
        gc.collect()
        _threads(args.build_threads)
        rss_before = _rss_mib()
        # HNSW on inner product plateaus below the target (calibration would climb to its cap): swept only.
        fixed = {"ef_search": 16} if name == "hnsw-ip" else {}
        index = ItemIndex.build(cat.table, kind, queries=calibration, target_recall=args.target_recall, mips=mips, **fixed)
        gc.collect()
        row: dict[str, Any] = {
            "kind": kind,
            "mips": index.info.mips or "exact",
            "build_seconds": index.info.build_seconds,
            "build_threads": args.build_threads,
            "rss_growth_mib": _rss_mib() - rss_before,
            "index_mib": index_bytes(index) / 2**20,
            "search_parameter": index.search_parameter,
            "nlist": index.info.nlist,
            "hnsw_m": index.info.hnsw_m,
            "calibrated_recall": index.info.calibrated_recall,
            "recall": recall_at_k(index.search(queries, K)[1], truth),
        }
        print(
            f"  {name}: built in {row['build_seconds']:.1f} s, parameter {row['search_parameter']}, recall {row['recall']:.4f}",
            flush=True,
        )
        if not is_variant:
            for threads in (1, 2):
                _threads(threads)
                row[f"latency_{threads}t"] = single_query_latency(index, queries[: args.latency_queries])
                row[f"qps_batch64_{threads}t"] = batched_throughput(index, queries)
                print(
                    f"    {threads} thread(s): {json.dumps(row[f'latency_{threads}t'])}, {row[f'qps_batch64_{threads}t']:.0f} q/s batched",
                    flush=True,
                )
        if kind != "flat":
            doubling = [2**i for i in range(20)]
            values = [v for v in doubling if v < index.info.nlist] + [index.info.nlist] if kind == "ivf" else doubling[4:12]
            row["sweep"] = sweep(index, values, queries[: args.sweep_queries], truth[: args.sweep_queries])
        result["indexes"][name] = row
        if is_variant:
            del index
        else:
            kinds[name] = index
    if cat.name == "clustered" and args.end_to_end:
        result["end_to_end"] = end_to_end(cat, kinds, args)
    return result


def end_to_end(cat: Catalogue, indexes: dict[str, ItemIndex], args: argparse.Namespace) -> dict[str, Any]:
    """Recommender.recommend_batch for one history (k = 10), full scoring vs each index; torch and FAISS at 1 thread."""
    import polars as pl
    import torch

    from llmrec.models.next_item_lm import NextItemLM, NextItemLMConfig
    from llmrec.recommend import Recommender

    torch.manual_seed(0)
    torch.set_num_threads(1)
    _threads(1)
    n, d = cat.table.shape[0] - 1, cat.table.shape[1]
    model = NextItemLM(NextItemLMConfig(n_items=n, d_model=d)).eval()
    with torch.no_grad():
        model.item_emb.weight.copy_(torch.from_numpy(cat.table))
    ids = [str(i) for i in range(1, n + 1)]
    items = pl.DataFrame(
        {"item": ids, "item_idx": np.arange(1, n + 1), "title": [None] * n}, schema_overrides={"title": pl.String}
    )
    rec = Recommender(model, items, {}, {})
    rng = np.random.default_rng(3)
    histories = [rng.integers(1, n + 1, size=int(rng.integers(5, 51))) for _ in range(args.e2e_requests)]
    out: dict[str, Any] = {"n_requests": len(histories), "threads": 1}
    for name, index in [("full scoring", None), *indexes.items()]:
        rec.ann = index
        for h in histories[:20]:
            rec.recommend_batch([h], K)
        times = np.empty(len(histories))
        for i, h in enumerate(histories):
            started = time.perf_counter()
            rec.recommend_batch([h], K)
            times[i] = time.perf_counter() - started
        ms = times * 1e3
        out[name] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}
        print(f"  end to end, {name}: {json.dumps(out[name])}", flush=True)
    return out


def machine() -> dict[str, Any]:
    import faiss
    import torch

    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?"
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "faiss": faiss.__version__,
        "faiss_simd": faiss.get_compile_options(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "load_average_at_start": os.getloadavg(),
    }


def run(args: argparse.Namespace) -> None:
    results: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine(), "args": vars(args), "catalogues": []}
    makers = {"clustered": clustered_catalogue, "gaussian": gaussian_catalogue}
    for name in args.catalogues.split(","):
        started = time.perf_counter()
        cat = makers[name](args.n_items, args.dim, seed=0)
        print(f"{name}: generated {args.n_items:,} x {args.dim} in {time.perf_counter() - started:.1f} s", flush=True)
        results["catalogues"].append(bench_catalogue(cat, args))
        del cat
        gc.collect()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str))  # after each catalogue: a crash keeps the rest
    results["machine"]["load_average_at_end"] = os.getloadavg()
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {args.out}")


# ---- report --------------------------------------------------------------------------------------------------
def plot(results_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads(results_path.read_text())
    cats = results["catalogues"]
    fig, axes = plt.subplots(1, len(cats), figsize=(6.2 * len(cats), 5.2), squeeze=False)
    styles = {
        "ivf": ("tab:blue", "-", "o", "IVF, L2 reduction (nprobe)"),
        "hnsw": ("tab:red", "-", "s", "HNSW, L2 reduction (efSearch)"),
        "ivf-ip": ("tab:blue", ":", "o", "IVF, inner product"),
        "hnsw-ip": ("tab:red", ":", "s", "HNSW, inner product"),
    }
    for ax, cat in zip(axes[0], cats, strict=True):
        for name, (color, line, marker, label) in styles.items():
            row = cat["indexes"].get(name)
            if row is None or "sweep" not in row:
                continue
            xs = [p["p99_ms"] for p in row["sweep"]]
            ys = [p["recall"] for p in row["sweep"]]
            ax.plot(xs, ys, line, marker=marker, color=color, label=label, markersize=4)
            if not name.endswith("-ip"):
                for p in row["sweep"][::2]:
                    ax.annotate(
                        str(p["value"]), (p["p99_ms"], p["recall"]), fontsize=7, xytext=(3, -9), textcoords="offset points"
                    )
        for name in ("ivf", "hnsw"):
            row = cat["indexes"][name]
            ax.plot(
                [row["latency_1t"]["p99_ms"]],
                [row["recall"]],
                "o",
                mfc="none",
                mec=styles[name][0],
                markersize=13,
                mew=1.5,
                label="as calibrated by ItemIndex.build (target 0.99 on 1,000 other queries)" if name == "ivf" else None,
            )
        flat = cat["indexes"]["flat"]
        ax.plot([flat["latency_1t"]["p99_ms"]], [1.0], "k*", markersize=11, label="flat (exact)")
        ax.axhline(0.98, color="gray", lw=0.8, ls="--")
        ax.axvline(10.0, color="gray", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_ylim(max(0.0, min(0.5, ax.get_ylim()[0])), 1.01)
        ax.set_xlabel("p99 latency, one query per call, 1 thread (ms, log)")
        ax.set_ylabel(f"recall@{K} vs exact")
        ax.set_title(f"{cat['catalogue']}: {cat['n_items']:,} items, d = {cat['dim']}")
        ax.grid(True, which="both", lw=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Maximum inner product top-10: recall vs latency (dashed: targets recall 0.98, p99 10 ms)", fontsize=11)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def table(results_path: Path) -> None:
    """The Markdown tables of docs/scaling.md from a results file."""
    results = json.loads(results_path.read_text())
    for cat in results["catalogues"]:
        print(f"\n{cat['catalogue']} ({cat['n_items']:,} items, d = {cat['dim']}, {cat['n_queries']:,} queries)\n")
        print(
            "| index | parameter | build (s) | memory (MiB) | recall@10 | p50 / p99 ms, 1 thread | p50 / p99 ms, 2 threads | q/s batch 64, 1 / 2 threads |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name, row in cat["indexes"].items():
            param = {
                "ivf": f"nlist {row['nlist']}, nprobe {row['search_parameter']}",
                "hnsw": f"M {row['hnsw_m']}, efSearch {row['search_parameter']}",
            }.get(row["kind"], "exact")
            if name.endswith("-ip"):
                print(
                    f"| {name} | {param} | {row['build_seconds']:.1f} | {row['index_mib']:.0f} | {row['recall']:.4f} | (sweep only) | | |"
                )
                continue
            l1, l2 = row["latency_1t"], row["latency_2t"]
            print(
                f"| {name} | {param} | {row['build_seconds']:.1f} | {row['index_mib']:.0f} (RSS +{row['rss_growth_mib']:.0f}) | {row['recall']:.4f} "
                f"| {l1['p50_ms']:.3f} / {l1['p99_ms']:.3f} | {l2['p50_ms']:.3f} / {l2['p99_ms']:.3f} "
                f"| {row['qps_batch64_1t']:,.0f} / {row['qps_batch64_2t']:,.0f} |"
            )
        if "end_to_end" in cat:
            e2e = cat["end_to_end"]
            print("\n| Recommender.recommend_batch, 1 request, k = 10 | p50 ms | p99 ms |\n|---|---|---|")
            for name, v in e2e.items():
                if isinstance(v, dict):
                    print(f"| {name} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} |")


def describe(model_path: Path) -> None:
    """The generator's statistics for a trained artifact: its item table and the hidden states of its users."""
    import torch

    from llmrec.data.sequences import pad_left
    from llmrec.recommend import Recommender

    torch.set_num_threads(1)
    rec = Recommender.load(model_path, ann="off")
    table = rec.model.item_table().detach().numpy()[1:]  # type: ignore[attr-defined]
    counts = np.zeros(len(table) + 1)
    for h in rec.histories.values():
        np.add.at(counts, h, 1)
    rank = np.argsort(np.argsort(-counts[1:])) + 1  # 1 = most popular
    hs = list(rec.histories.values())[:500]
    with torch.no_grad():
        q = rec.model.encode(pad_left(hs, rec.max_seq_len))[:, -1].numpy()  # type: ignore[attr-defined]
    print(json.dumps(describe_vectors(table, q, rank)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="measure; writes a JSON results file")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--n-items", type=int, default=1_000_000)
    r.add_argument("--dim", type=int, default=64)
    r.add_argument("--catalogues", default="clustered,gaussian")
    r.add_argument("--queries", type=int, default=2000, help="held-out evaluation queries (recall, throughput)")
    r.add_argument("--latency-queries", type=int, default=1000, help="of those, timed one at a time")
    r.add_argument("--sweep-queries", type=int, default=500)
    r.add_argument("--target-recall", type=float, default=0.99, help="calibration target of ItemIndex.build")
    r.add_argument("--build-threads", type=int, default=2)
    r.add_argument("--ip-variants", action=argparse.BooleanOptionalAction, default=True)
    r.add_argument("--end-to-end", action=argparse.BooleanOptionalAction, default=True)
    r.add_argument("--e2e-requests", type=int, default=500)
    pl_ = sub.add_parser("plot", help="the recall-latency PNG from a results file")
    pl_.add_argument("results", type=Path)
    pl_.add_argument("--png", type=Path, default=REPO / "docs" / "scaling" / "ann_recall_latency.png")
    t = sub.add_parser("table", help="Markdown tables from a results file")
    t.add_argument("results", type=Path)
    d = sub.add_parser("describe", help="the generator's statistics for a trained model artifact")
    d.add_argument("model", type=Path)
    args = p.parse_args()
    if args.command == "run":
        run(args)
    elif args.command == "plot":
        plot(args.results, args.png)
    elif args.command == "table":
        table(args.results)
    else:
        describe(args.model)


if __name__ == "__main__":
    main()
