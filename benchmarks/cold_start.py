"""Cold-start users benchmark (issue 5): every method, the same protocol, one table and one plot per dataset.

Usage: python benchmarks/cold_start.py DATASET WORK_DIR [--threads 1] [--set model.d_model=64 ...] [--final]

Stages (each skipped when its output already exists in WORK_DIR, so a run can be resumed):
1. data/       DATASET prepared with the cold-user split (15% of users held out: half cold_valid, half cold_test);
2. base/       the next-item LM trained on the training users (`llmrec train`'s code path; early stopping on the
               warm users' validation targets);
3. <method>/   `llmrec meta-train` for finetune, maml (support_loss bag / next x preconditioner scalar / diagonal /
               matrix: the best on cold_valid is kept), in-context, in-context+<that maml variant>; every choice
               is made on cold_valid users;
4. results.json, results.md, results.png: with --final, cold_test users read once, for every method, n = 1, 2, 3,
               5, with 95% bootstrap CIs, paired tests against the zero-shot LM; warm users' leave-one-out test
               NDCG@10 of each model (the control) and, on 2,000 warm users, what adapting every history (no
               max_history) would cost; adaptation latency per user (one thread, batch of one). Without --final the
               same tables are made on cold_valid users and the warm users' validation targets: no test target is read.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.config import merge_sections, parse_overrides
from llmrec.data import PrepareConfig, PreparedDataset, prepare, read_dataset
from llmrec.data.sequences import pad_left
from llmrec.eval.cold_start import ColdStartResult, evaluate_cold_start
from llmrec.eval.evaluate import compute_ranks, paired_test
from llmrec.eval.metrics import ndcg_at_k, summarize
from llmrec.experiment import check_settings, train_model
from llmrec.meta.maml import UserAdapter, adapted_scores, has_adapter, make_adapted_score_fn
from llmrec.meta.training import cold_start_table, meta_train_model
from llmrec.models.baselines import ItemKNN, MostPopular
from llmrec.models.next_item_lm import NextItemLM
from llmrec.training.fit import make_score_fn

BASE_DEFAULTS = {"model": {"max_seq_len": 200}, "train": {"epochs": 200, "patience": 10, "progress": False}}
# The maml adapter's support loss and step preconditioner (scalar α, diagonal, full matrix); the best on cold_valid is kept.
MAML_VARIANTS = {
    f"maml-{pc}-{loss}" if pc != "scalar" else f"maml-{loss}": {"adapter": {"support_loss": loss, "preconditioner": pc}}
    for pc in ("scalar", "diagonal", "matrix")
    for loss in ("bag", "next")
}
# Episodic fine-tuning with and without replay of ordinary windows; the better on cold_valid is kept (each run keeps
# only epochs whose warm validation NDCG@10 stays within 2% of the base's: episodic.warm_tolerance).
WARM_LIMIT = 2000  # warm users for the (slow) "adapt every history" diagnostic
IC_VARIANTS = {"in-context-noreplay": {"episodic": {"replay": 0.0}}, "in-context-replay": {"episodic": {"replay": 1.0}}}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _prepared(name: str, work: Path) -> PreparedDataset:
    if not (work / "data" / "manifest.json").exists():
        raw, source = read_dataset(name)
        prepare(raw, PrepareConfig(split="cold-user", cold_user_fraction=0.15, seed=0), source=source).save(work / "data")
    return PreparedDataset.load(work / "data")


def _meta(
    ds: PreparedDataset,
    work: Path,
    name: str,
    method: str,
    sections: dict[str, dict[str, Any]],
    timings: dict[str, float],
    base: Path | None = None,
) -> Path:
    out = work / name
    if not (out / "meta.json").exists():
        t0 = time.perf_counter()
        summary = meta_train_model(ds, base or work / "base", out, method, sections)
        timings[name] = time.perf_counter() - t0
        _log(
            f"{name}: cold valid {summary['valid_zero_shot']:.4f} -> {summary['valid']:.4f}, "
            f"warm valid {summary['warm_valid_base']:.4f} -> {summary['warm_valid']:.4f} ({timings[name]:.0f}s)"
        )
    return out


def _valid_of(path: Path) -> float:
    s = json.loads((path / "meta.json").read_text())
    return float(s["valid"])


def _score_fns(path: Path) -> tuple[NextItemLM, Any]:
    model = NextItemLM.from_pretrained(path)
    if has_adapter(path):
        return model, make_adapted_score_fn(model, UserAdapter.from_pretrained(path))
    return model, make_score_fn(model)


def _baseline_fn(model: MostPopular | ItemKNN) -> Any:
    return lambda histories: model.score(pad_left(histories, 50))


def _warm_ndcg(score_fn: Any, ds: PreparedDataset, split: str, limit: int | None = None) -> dict[str, Any]:
    ex = ds.eval_examples(split)
    ranks = compute_ranks(score_fn, ex.histories[:limit], ex.targets[:limit])
    m = summarize(ranks, (10,))
    return {"ndcg@10": m["ndcg@10"], "recall@10": m["recall@10"], "per_user": ndcg_at_k(ranks, 10)}


def _latency_ms(model: NextItemLM, adapter: UserAdapter | None, histories: list[np.ndarray], repeat: int = 3) -> dict[str, float]:
    """Median wall time of scoring one user (batch of one), adaptation included when an adapter is given."""
    times = []
    for h in histories:
        ids = pad_left([h], model.config.max_seq_len)
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            adapted_scores(model, adapter, ids) if adapter is not None else model.score(ids)
            best = min(best, time.perf_counter() - t0)
        times.append(best * 1000)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95)), "max_ms": float(np.max(times))}


def _plot(results: dict[str, ColdStartResult], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric in zip(axes, ("ndcg@10", "recall@10"), strict=True):
        for i, (name, r) in enumerate(results.items()):
            ns = np.array(r.support_sizes, dtype=float) + (i - len(results) / 2) * 0.04  # jitter: CIs stay readable
            mean = np.array([r.metrics[n][metric] for n in r.support_sizes])
            lo = np.array([r.ci[n][metric][0] for n in r.support_sizes])
            hi = np.array([r.ci[n][metric][1] for n in r.support_sizes])
            ax.errorbar(ns, mean, yerr=[mean - lo, hi - mean], marker="o", capsize=3, label=name)
        ax.set_xlabel("n (support items revealed)")
        ax.set_ylabel({"ndcg@10": "NDCG@10", "recall@10": "Recall@10"}[metric])
        ax.set_xticks(list(next(iter(results.values())).support_sizes))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("work", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="base LM overrides, e.g. model.d_model=64")
    ap.add_argument("--meta-set", action="append", default=[], help="meta-train overrides for every method")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--final", action="store_true", help="read cold_test users and warm test targets (only for the reported run)")
    a = ap.parse_args()
    held, warm_split = ("cold_test", "test") if a.final else ("cold_valid", "valid")
    torch.set_num_threads(a.threads)
    work: Path = a.work
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    ds = _prepared(a.dataset, work)
    _log(f"data: {ds.stats()['roles']}")
    if not (work / "base" / "config.json").exists():
        sections = merge_sections(BASE_DEFAULTS, parse_overrides(a.set))
        t0 = time.perf_counter()
        summary = train_model(ds, work / "data", check_settings("next-item-lm", sections, progress=False), work / "base")
        timings["base"] = time.perf_counter() - t0
        _log(f"base: {json.dumps({k: summary[k] for k in ('best_epoch', 'epochs_run', 'best_valid', 'seconds')})}")

    meta_sections = parse_overrides(a.meta_set)
    paths = {"finetune": _meta(ds, work, "finetune", "finetune", meta_sections, timings)}
    variants = {name: _meta(ds, work, name, "maml", {**meta_sections, **extra}, timings) for name, extra in MAML_VARIANTS.items()}
    best_maml = max(variants, key=lambda n: _valid_of(variants[n]))  # chosen on cold_valid
    paths["maml"] = variants[best_maml]
    _log(f"maml variant chosen on cold_valid: {best_maml} ({ {n: round(_valid_of(p), 4) for n, p in variants.items()} })")
    for name, extra in IC_VARIANTS.items():
        variants[name] = _meta(ds, work, name, "in-context", merge_sections(meta_sections, extra), timings)
    best_ic = max(IC_VARIANTS, key=lambda n: _valid_of(variants[n]))  # warm validation is enforced inside
    paths["in-context"] = variants[best_ic]
    _log(f"in-context variant chosen on cold_valid: {best_ic} ({ {n: round(_valid_of(variants[n]), 4) for n in IC_VARIANTS} })")
    # in-context+maml = the maml adapter meta-trained on top of the chosen episodic LM (the same as `--method
    # in-context+maml` with that LM's settings, without training the LM a second time).
    both = merge_sections(meta_sections, {"adapter": MAML_VARIANTS[best_maml]["adapter"]})
    paths["in-context+maml"] = _meta(ds, work, f"in-context+{best_maml}", "maml", both, timings, base=paths["in-context"])

    # ---- cold_test users (with --final; else cold_valid): read once --------------------------------------
    train_seqs = ds.train_sequences()
    _, test_seqs = ds.cold_users(held)
    base = NextItemLM.from_pretrained(work / "base")
    fns: dict[str, Any] = {
        "most-popular": _baseline_fn(MostPopular.fit(train_seqs, ds.n_items)),
        "item-knn": _baseline_fn(ItemKNN.fit(train_seqs, ds.n_items)),
        "zero-shot LM": make_score_fn(base),
    }
    for name, path in paths.items():
        fns[name] = _score_fns(path)[1]
    t0 = time.perf_counter()
    results = {name: evaluate_cold_start(fn, test_seqs, n_boot=a.n_boot) for name, fn in fns.items()}
    timings["cold_test_eval"] = time.perf_counter() - t0
    zero = results["zero-shot LM"]
    paired = {
        name: {str(n): paired_test(r.per_user[n]["ndcg@10"], zero.per_user[n]["ndcg@10"]) for n in r.support_sizes}
        for name, r in results.items()
        if name != "zero-shot LM"
    }

    # ---- warm users (control): the leave-one-out test of each model ----------------------------------------
    # With adapt=True an artifact adapts histories of at most adapter.max_history (5) items; warm histories are longer,
    # so they are scored by the LM as it is. "adapt every history" lifts that limit, on the first WARM_LIMIT users.
    warm: dict[str, Any] = {"base": _warm_ndcg(make_score_fn(base), ds, warm_split)}
    for name, path in paths.items():
        model, fn = _score_fns(path)
        warm[f"{name} (adapt=True)" if has_adapter(path) else name] = _warm_ndcg(fn, ds, warm_split)
    warm_all: dict[str, Any] = {}
    for split in ("valid", "test") if a.final else ("valid",):
        maml_lm = NextItemLM.from_pretrained(paths["maml"])
        adapter = UserAdapter.from_pretrained(paths["maml"])
        every = UserAdapter(replace(adapter.config, max_history=maml_lm.config.max_seq_len))
        every.load_state_dict(adapter.state_dict())
        warm_all[split] = {
            "base": _warm_ndcg(make_score_fn(base), ds, split, WARM_LIMIT),
            "maml, adapt every history": _warm_ndcg(make_adapted_score_fn(maml_lm, every), ds, split, WARM_LIMIT),
        }
    for table in (warm, *warm_all.values()):
        for name, w in table.items():
            w["ratio_to_base"] = w["ndcg@10"] / table["base"]["ndcg@10"]
            w["paired_vs_base"] = paired_test(w.pop("per_user"), table["base"]["per_user"]) if name != "base" else None
        table["base"].pop("per_user")

    # ---- adaptation latency: one user at a time, one thread -------------------------------------------------
    torch.set_num_threads(1)
    latency: dict[str, Any] = {}
    sample = test_seqs[:100]
    for n in (1, 2, 3, 5):
        hs = [s[:n] for s in sample]
        latency[str(n)] = {"zero-shot": _latency_ms(base, None, hs)}
        for name in ("finetune", "maml", "in-context+maml"):
            model = NextItemLM.from_pretrained(paths[name])
            latency[str(n)][name] = _latency_ms(model, UserAdapter.from_pretrained(paths[name]), hs)

    out = {
        "dataset": a.dataset,
        "cold_test_users": zero.n_users,
        "protocol": {
            "support_sizes": list(zero.support_sizes),
            "n_query": 1,
            "exclude_seen": True,
            "ranking": "full",
            "n_boot": a.n_boot,
            "cold_users": held,
            "warm_split": warm_split,
            "final": a.final,
        },
        "maml_variant": best_maml,
        "in_context_variant": best_ic,
        "warm_valid_ndcg@10": {
            name: json.loads((p / "meta.json").read_text())["warm_valid"] for name, p in {**paths, **variants}.items()
        },
        "valid": {name: _valid_of(p) for name, p in {**paths, **variants}.items()},
        held: {name: r.to_dict() for name, r in results.items()},
        "paired_ndcg@10_vs_zero_shot": paired,
        f"warm_{warm_split}": warm,
        "warm_adapt_every_history": {"users": WARM_LIMIT, **warm_all},
        "latency_ms": latency,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "meta": {name: json.loads((p / "meta.json").read_text()) for name, p in {**paths, **variants}.items()},
        "wall_s": round(time.perf_counter() - t_all, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    (work / "results.json").write_text(json.dumps(out, indent=1, default=float))
    (work / "results.md").write_text(cold_start_table(results) + "\n")
    _plot(results, work / "results.png", f"{a.dataset}: {held} users ({zero.n_users}), 95% bootstrap CIs")
    shutil.copy(work / "results.png", work / f"cold_start_{a.dataset}.png")
    print(cold_start_table(results))
    print(
        json.dumps(
            {"warm": {k: round(v["ndcg@10"], 4) for k, v in warm.items()}, "latency": latency["5"], "timings": out["timings_s"]},
            indent=1,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
