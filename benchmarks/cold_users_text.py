"""Cold-start users with item text in play (issue 29, item 4): floors, text-kNN, zero-shot models and text blends.

Usage: python benchmarks/cold_users_text.py PREPARED_DIR OUT_DIR [--model NAME=DIR ...] [--text-model NAME=DIR ...]
       [--threads 2] [--n-boot 1000] [--final]

PREPARED_DIR is a dataset prepared with the cold-user split (`llmrec data prepare --split cold-user
--cold-user-fraction 0.15`, docs/cold-start.md); every --model (id-only) or --text-model (a model that reads item
text) is an artifact trained on that folder's training users (`llmrec train --dataset PREPARED_DIR ...`), scored
zero-shot: the support is read in context. Protocol:
`evaluate_cold_start` (support = the first n items, query = the next, full ranking, seen items excluded, the same
users, those with >= 6 items, for every n in 1, 2, 3, 5).

Methods:
- most-popular, item-kNN: the floors of benchmarks/cold_start.py (same settings).
- text-kNN: score(j) = the recency-weighted mean (weights decay^age, normalised) or the max over the support of the
  MiniLM cosine between item j's title and each support title; the aggregation and decay are chosen on cold_valid.
- each --model zero-shot, and each --model + w * text, item-kNN + w * text: the base score normalised per user (z:
  z-score over the catalogue; log-softmax: log-probabilities, for a model) plus w times the z-scored text-kNN score
  of the chosen variant. The normalisation and w are chosen per method on cold_valid, **one w for every n**: a per-n
  choice would fit four times as many knobs to the same 1,100-odd users; the per-n optimum is recorded beside it
  (``valid_grid``) so that the cost of that choice can be seen.

Every choice is made on cold_valid users (mean NDCG@10 over n). With --final, cold_test users are read once:
NDCG@10 / Recall@10 per n with 95% bootstrap CIs, the ratio to item-kNN, and paired tests (bootstrap CI of the
per-user difference, sign-flip p) of the best method on cold_valid against the best method without text and without
meta-learning (item-kNN or an id-only zero-shot model, also chosen on cold_valid). Without --final the same tables
are made on cold_valid (the selection users: optimistic). Writes OUT_DIR/results.json and results.md and prints the
tables. Nothing is trained; a --model whose catalogue differs from the dataset's is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import torch

from llmrec.artifact import open_artifact, text_cache_dir
from llmrec.data import PreparedDataset
from llmrec.data.sequences import pad_left
from llmrec.eval.cold_start import ColdStartResult, cold_start_table, evaluate_cold_start
from llmrec.eval.scoring import score_fn
from llmrec.eval.stats import paired_test
from llmrec.index.text_encoder import SentenceTransformerEncoder, encode_items
from llmrec.models.baselines import ItemKNN, MostPopular

ScoreFn = Callable[[list[npt.NDArray[np.int64]]], torch.Tensor]

TEXT_VARIANTS = [("max", 1.0)] + [
    ("mean", d) for d in (1.0, 0.8, 0.5, 0.3, 0.1, 0.0)
]  # decay 0: the last item  # (aggregation, recency decay)
WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0)
TARGET_SIZES = (1, 2, 3)  # the issue's target: NDCG@10 >= 1.5x item-kNN at n <= 3


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def text_knn_scores(emb: torch.Tensor, histories: Sequence[npt.NDArray[np.int64]], agg: str, decay: float) -> torch.Tensor:
    """[B, V+1] text-kNN scores: per history, the recency-weighted mean (weight decay^age, normalised to sum 1) or the
    max over its items of the cosine between each catalogue item and the history item; column 0 (padding) is -inf.

    emb: [V+1, D] L2-normalised item text embeddings (row 0 zeros)."""
    if agg not in ("mean", "max"):
        raise ValueError(f"agg must be mean or max, got {agg!r}")
    out = torch.empty(len(histories), emb.shape[0])
    by_length: dict[int, list[int]] = {}
    for b, h in enumerate(histories):
        by_length.setdefault(len(h), []).append(b)
    for n, rows in by_length.items():  # one matrix product per history length
        ids = torch.as_tensor(np.stack([np.asarray(histories[b], dtype=np.int64) for b in rows]))  # [B, n]
        if agg == "max":
            out[rows] = (emb[ids] @ emb.T).max(1).values  # [B, n, V+1] -> [B, V+1]
        else:  # the weighted mean of cosines is the cosine with the weighted mean of the (unit) vectors
            w = decay ** torch.arange(n - 1, -1, -1, dtype=torch.float32)  # [n], most recent = 1
            out[rows] = ((w / w.sum()) @ emb[ids]) @ emb.T  # [B, D] @ [D, V+1]
    out[:, 0] = float("-inf")
    return out


def normalise(scores: torch.Tensor, how: str) -> torch.Tensor:
    """[B, V+1] -> per-row "z" (z-score over the finite entries) or "log-softmax"; -inf entries stay -inf."""
    finite = torch.isfinite(scores)
    x = torch.where(finite, scores, torch.zeros(()))
    if how == "z":
        n = finite.sum(1, keepdim=True).clamp(min=1)
        mean = x.sum(1, keepdim=True) / n
        var = ((x - mean) ** 2 * finite).sum(1, keepdim=True) / n
        out = (x - mean) / var.sqrt().clamp(min=1e-12)
    elif how == "log-softmax":
        out = torch.log_softmax(scores.masked_fill(~finite, float("-inf")), dim=1)
    else:
        raise ValueError(f"normalisation must be z or log-softmax, got {how!r}")
    return out.masked_fill(~finite, float("-inf"))


def text_term(text_scores: torch.Tensor) -> torch.Tensor:
    """z(scores) with its masked (-inf) entries set to 0, so that a weight 0 adds nothing (0 * -inf would be NaN)."""
    t = normalise(text_scores, "z")
    return torch.where(torch.isfinite(t), t, 0.0)


def add_terms(base_norm: ScoreFn, terms: Sequence[tuple[ScoreFn, float]]) -> ScoreFn:
    """base_norm(hs) + sum of weight * term(hs): a normalised base score plus weighted `text_term`s."""

    def fn(hs: list[npt.NDArray[np.int64]]) -> torch.Tensor:
        out = base_norm(hs)
        for term, weight in terms:
            if weight:
                out = out + weight * term(hs)
        return out

    return fn


def blend(base: ScoreFn, how: str, terms: Sequence[tuple[ScoreFn, float]]) -> ScoreFn:
    """normalise(base, how) + sum of weight * z(other): one score function (the base's -inf entries stay -inf); the
    others are e.g. text-kNN and item-kNN."""
    return add_terms(lambda hs: normalise(base(hs), how), [(lambda hs, f=f: text_term(f(hs)), weight) for f, weight in terms])


class Memo:
    """A score function whose rows are computed once per distinct history (the grid rescores the same supports)."""

    def __init__(self, fn: ScoreFn) -> None:
        self.fn, self.rows = fn, {}  # type: ignore[var-annotated]

    def __call__(self, histories: list[npt.NDArray[np.int64]]) -> torch.Tensor:
        keys = [np.asarray(h, dtype=np.int64).tobytes() for h in histories]
        todo = {k: i for i, k in reversed(list(enumerate(keys))) if k not in self.rows}  # key -> its first row
        if todo:
            fresh = self.fn([histories[i] for i in todo.values()])
            for k, row in zip(todo, fresh, strict=True):
                self.rows[k] = row.clone()
        return torch.stack([self.rows[k] for k in keys])

    def clear(self) -> None:
        self.rows.clear()


def _fail(msg: str) -> NoReturn:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def _mean_ndcg(r: ColdStartResult) -> float:
    return float(np.mean([r.metrics[n]["ndcg@10"] for n in r.support_sizes]))


def _model_fn(path: Path, ds: PreparedDataset) -> ScoreFn:
    art = open_artifact(path)
    items = art.items
    if items.height != ds.n_items or items["item"].to_list() != ds.items.sort("item_idx")["item"].to_list():
        _fail(f"{path}: its catalogue is not the dataset's ({items.height} items): train it on that folder")
    trained_on = json.loads((path / "dataset.json").read_text()) if (path / "dataset.json").is_file() else {}
    roles = trained_on.get("stats", {}).get("roles")
    if trained_on.get("split", {}).get("protocol") != "cold-user" or roles != ds.stats()["roles"]:
        _fail(
            f"{path}/dataset.json: trained on split {trained_on.get('split', {}).get('protocol')!r} with roles "
            f"{roles}, not on this cold-user dataset ({ds.stats()['roles']}): cold users may have been trained on"
        )
    model = art.model("cpu")
    return score_fn(model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("prepared", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", action="append", default=[], help="NAME=MODEL_DIR of an id-only model (repeatable)")
    ap.add_argument(
        "--text-model", action="append", default=[], help="NAME=MODEL_DIR of a model that reads item text (repeatable)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--final", action="store_true", help="read the cold_test users (only for the reported run)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t_all = time.perf_counter()
    if not (a.prepared / "manifest.json").is_file():
        _fail(f"{a.prepared}: not a prepared dataset (no manifest.json): run llmrec data prepare first")
    ds = PreparedDataset.load(a.prepared)
    _, valid_seqs = ds.cold_users("cold_valid")
    _, test_seqs = ds.cold_users("cold_test")
    if not valid_seqs or not test_seqs:
        _fail(f"{a.prepared}: no cold_valid / cold_test users: prepare it with --split cold-user")
    models: dict[str, tuple[Path, bool]] = {}
    for spec, has_text in [(s, False) for s in a.model] + [(s, True) for s in a.text_model]:
        name, sep, path = spec.partition("=")
        if not sep or not name or not Path(path, "config.json").is_file():
            _fail(f"--model {spec!r}: expected NAME=MODEL_DIR with a model artifact")
        models[name] = (Path(path), has_text)

    model_fns = {name: _model_fn(path, ds) for name, (path, _) in models.items()}  # checked before any work
    train_seqs = ds.train_sequences()
    pop, knn = MostPopular.fit(train_seqs, ds.n_items), ItemKNN.fit(train_seqs, ds.n_items)
    floors: dict[str, ScoreFn] = {
        "most-popular": lambda hs: pop.score(pad_left(hs, 50)),
        "item-kNN": lambda hs: knn.score(pad_left(hs, 50)),
    }
    t0 = time.perf_counter()
    emb = torch.from_numpy(encode_items(ds.items, ds.domain, SentenceTransformerEncoder(), text_cache_dir(), progress=False))
    _log(f"text embeddings {tuple(emb.shape)} ({time.perf_counter() - t0:.1f}s)")

    def ev(fn: ScoreFn, seqs: Sequence[npt.NDArray[np.int64]], n_boot: int = 0) -> ColdStartResult:
        return evaluate_cold_start(fn, seqs, n_boot=n_boot)

    # ---- choices on cold_valid ---------------------------------------------------------------------------------
    valid: dict[str, Any] = {}
    text_valid = {
        f"{agg} d={d}": _mean_ndcg(ev(lambda hs, agg=agg, d=d: text_knn_scores(emb, hs, agg, d), valid_seqs))
        for agg, d in TEXT_VARIANTS
    }
    agg, decay = TEXT_VARIANTS[int(np.argmax(list(text_valid.values())))]
    valid["text-kNN variants"] = text_valid
    _log(f"text-kNN on cold_valid (mean NDCG@10 over n): {text_valid}; chosen {agg}, decay {decay}")

    def text_fn(hs: list[npt.NDArray[np.int64]]) -> torch.Tensor:
        return text_knn_scores(emb, hs, agg, decay)

    bases: dict[str, tuple[ScoreFn, tuple[str, ...]]] = {"item-kNN": (floors["item-kNN"], ("z",))}
    bases.update({name: (fn, ("log-softmax", "z")) for name, fn in model_fns.items()})
    text_memo = Memo(lambda hs: text_term(text_fn(hs)))  # the grid rescores the same supports: normalise once
    knn_memo = Memo(lambda hs: text_term(floors["item-kNN"](hs)))
    chosen: dict[str, tuple[str, float]] = {}
    chosen3: dict[str, tuple[str, float, float]] = {}  # model + w * text + v * item-kNN
    grids: dict[str, Any] = {}
    for name, (fn, norms) in bases.items():
        memo = Memo(fn)
        grid: dict[str, dict[str, float]] = {}
        per_n: dict[str, dict[str, dict[int, float]]] = {}
        for how in norms:
            grid[how], per_n[how] = {}, {}
            base_norm = Memo(lambda hs, how=how, memo=memo: normalise(memo(hs), how))
            for w in WEIGHTS:
                r = ev(add_terms(base_norm, [(text_memo, w)]), valid_seqs)
                grid[how][str(w)] = _mean_ndcg(r)
                per_n[how][str(w)] = {n: r.metrics[n]["ndcg@10"] for n in r.support_sizes}
            base_norm.clear()
        how, w = max(((h, float(w)) for h in grid for w in grid[h]), key=lambda hw: grid[hw[0]][str(hw[1])])
        chosen[name] = (how, w)
        best_per_n = {
            n: max(((h, float(w)) for h in per_n for w in per_n[h]), key=lambda hw: per_n[hw[0]][str(hw[1])][n])
            for n in next(iter(per_n[how].values()))
        }
        grids[name] = {"mean_ndcg@10": grid, "per_n_ndcg@10": per_n, "best_per_n": {str(n): hw for n, hw in best_per_n.items()}}
        _log(f"{name} + w * text on cold_valid: chosen {how}, w={w} ({grid[how][str(w)]:.4f}; w=0: {grid[how]['0.0']:.4f})")
        if name != "item-kNN":  # a model + text + item-kNN: v given w, then w given v (one coordinate pass)
            base_norm = Memo(lambda hs, how=how, memo=memo: normalise(memo(hs), how))
            by_v = {v: _mean_ndcg(ev(add_terms(base_norm, [(text_memo, w), (knn_memo, v)]), valid_seqs)) for v in WEIGHTS}
            v = max(by_v, key=lambda x: by_v[x])
            by_w = {x: _mean_ndcg(ev(add_terms(base_norm, [(text_memo, x), (knn_memo, v)]), valid_seqs)) for x in WEIGHTS}
            w3 = max(by_w, key=lambda x: by_w[x])
            chosen3[name] = (how, w3, v)
            grids[name]["with_item_knn"] = {"v_given_w": by_v, "w_given_v": by_w}
            _log(f"{name} + w * text + v * item-kNN on cold_valid: w={w3}, v={v} ({by_w[w3]:.4f})")
            base_norm.clear()
        memo.clear()
    text_memo.clear()
    knn_memo.clear()
    valid["blends"] = grids

    # ---- the methods, on cold_test (--final) or cold_valid ---------------------------------------------------------
    # cold_valid means already measured by the choices above (a per-row normalisation keeps the ranking, so w = 0
    # is the base itself); the rest are measured here. "best" is chosen on them, never on the test users.
    fns: dict[str, ScoreFn] = {**floors, "text-kNN": text_fn}
    mean_grid = {name: g["mean_ndcg@10"] for name, g in grids.items()}
    valid_means: dict[str, float] = {"item-kNN": mean_grid["item-kNN"]["z"]["0.0"], "text-kNN": max(text_valid.values())}
    no_text = ["item-kNN"]  # candidates for "the best non-meta method without text"
    for name, (_, has_text) in models.items():
        fns[f"{name} zero-shot"] = bases[name][0]
        valid_means[f"{name} zero-shot"] = mean_grid[name]["z"]["0.0"]
        if not has_text:
            no_text.append(f"{name} zero-shot")
    for name, (how, w) in chosen.items():
        fns[f"{name} + text ({how}, w={w:g})"] = blend(bases[name][0], how, [(text_fn, w)])
        valid_means[f"{name} + text ({how}, w={w:g})"] = mean_grid[name][how][str(w)]
    for name, (how, w, v) in chosen3.items():
        label = f"{name} + text + item-kNN ({how}, w={w:g}, v={v:g})"
        fns[label] = blend(bases[name][0], how, [(text_fn, w), (floors["item-kNN"], v)])
        valid_means[label] = grids[name]["with_item_knn"]["w_given_v"][w]
    held = "cold_test" if a.final else "cold_valid"
    seqs = test_seqs if a.final else valid_seqs
    results: dict[str, ColdStartResult] = {}
    for name, fn in fns.items():
        results[name] = ev(fn, seqs, a.n_boot)
        if name not in valid_means:
            valid_means[name] = _mean_ndcg(results[name] if not a.final else ev(fn, valid_seqs))
        _log(
            f"{name}: {held} NDCG@10 "
            + " ".join(f"n={n} {results[name].metrics[n]['ndcg@10']:.4f}" for n in results[name].support_sizes)
        )
    best = max(valid_means, key=lambda k: valid_means[k])
    baseline = max(no_text, key=lambda k: valid_means[k])
    knn_r = results["item-kNN"]
    ratio = {
        name: {str(n): r.metrics[n]["ndcg@10"] / knn_r.metrics[n]["ndcg@10"] for n in r.support_sizes}
        for name, r in results.items()
    }
    paired = {
        str(n): paired_test(results[best].per_user[n]["ndcg@10"], results[baseline].per_user[n]["ndcg@10"])
        for n in results[best].support_sizes
    }
    sizes = knn_r.support_sizes
    met = {str(n): ratio[best][str(n)] >= 1.5 for n in TARGET_SIZES if n in sizes}

    lines = [
        f"{held} users: {knn_r.n_users} (>= {max(sizes) + 1} items), seen items excluded, full ranking, "
        f"95% bootstrap CIs ({a.n_boot} resamples)",
        "",
        cold_start_table(results),
        "",
        "NDCG@10 / item-kNN's:",
        "",
        "| method | " + " | ".join(f"n={n}" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
        *(f"| {name} | " + " | ".join(f"{ratio[name][str(n)]:.2f}x" for n in sizes) + " |" for name in results),
        "",
        f"Paired NDCG@10 difference, {best} (best on cold_valid) - {baseline} (best without text or meta-learning):",
        "",
        "| n | diff [95% CI] | p |",
        "|---|---|---|",
        *(
            f"| {n} | {p['mean_diff']:+.4f} [{p['ci_lo']:+.4f}, {p['ci_hi']:+.4f}] | {p['p_value']:.4f} |"
            for n, p in paired.items()
        ),
        "",
        f"Target NDCG@10 >= 1.5x item-kNN at n <= 3 ({best}): "
        + ", ".join(f"n={n} {'met' if m else 'missed'}" for n, m in met.items()),
    ]
    table = "\n".join(lines)
    out = {
        "dataset": str(a.prepared),
        "models": {name: {"path": str(p), "reads_text": t} for name, (p, t) in models.items()},
        "protocol": {
            "support_sizes": list(sizes),
            "n_query": 1,
            "exclude_seen": True,
            "ranking": "full",
            "users": held,
            "n_users": knn_r.n_users,
            "n_boot": a.n_boot,
            "final": a.final,
            "choices": "on cold_valid, mean NDCG@10 over n; one w per method for every n",
        },
        "text_knn": {"agg": agg, "decay": decay},
        "blends": {name: {"normalisation": how, "w": w} for name, (how, w) in chosen.items()},
        "blends_with_item_knn": {name: {"normalisation": how, "w": w, "v": v} for name, (how, w, v) in chosen3.items()},
        "valid": valid,
        "valid_mean_ndcg@10": valid_means,
        held: {name: r.to_dict() for name, r in results.items()},
        "ratio_to_item_knn": ratio,
        "best": best,
        "baseline": baseline,
        "paired_ndcg@10_best_vs_baseline": paired,
        "target_met": met,
        "wall_s": round(time.perf_counter() - t_all, 1),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps(out, indent=1, default=float))
    (a.out / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
