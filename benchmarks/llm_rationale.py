"""Recommendation text written by the LLM on a trained model: latency per rationale and how often the check passes
(docs/trust.md, "Reasons written by the LLM").

Usage: python benchmarks/llm_rationale.py MODEL_DIR [--users 50] [--seed 0] [--threads 1] [--llm PATH] [--free]
                                          [--json OUT.json]

For `--users` users drawn at random (seeded) among those with at least 3 history items, `Recommender.explain`
explains the top-1 item (occlusion attribution, the default rule for citing history items) and the LLM writes its
reason (`llmrec.explain.text.LLMTextGenerator`, loaded once before timing; default the packaged
SmolLM2-135M-Instruct). Timed: the writer's call alone (prompt, greedy decoding, check), one warm-up call left
out. The check pass rate is the share of reasons whose LLM text was kept (`written_by == "llm"`); each fallback's
reason is counted. `--free` also runs the writer without the opening it is given ("Since you bought A, X"), the
model writing the whole sentence, on the same reasons. The machine's load average is printed beside the timings:
on a shared machine they are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.explain.text import LLMTextGenerator, Rationale, Reason
from llmrec.recommend import Recommender


class _Timed:
    """Wraps the writer: records each reason, its rationale, and the wall-clock and CPU seconds `write` took
    (CPU seconds of this thread: about what the wall clock would read on an idle core, with one torch thread)."""

    def __init__(self, writer: LLMTextGenerator) -> None:
        self.writer = writer
        self.calls: list[tuple[Reason, Rationale, float]] = []
        self.cpu: list[float] = []

    def write(self, reason: Reason) -> Rationale:
        t, c = time.perf_counter(), time.thread_time()
        out = self.writer.write(reason)
        self.cpu.append(time.thread_time() - c)
        self.calls.append((reason, out, time.perf_counter() - t))
        return out

    def generate(self, reason: Reason) -> str:
        return self.write(reason).text


def _kind(fallback: str) -> str:
    return "names an unsupported item" if fallback.startswith("names item") else fallback


def _summary(calls: list[tuple[Reason, Rationale, float]], cpu: list[float]) -> dict[str, Any]:
    seconds = np.array([s for _, _, s in calls])
    kept = [r for _, r, _ in calls if r.written_by == "llm"]
    return {
        "n": len(calls),
        "pass_rate": len(kept) / len(calls),
        "fallbacks": dict(Counter(_kind(r.fallback) for _, r, _ in calls if r.fallback)),
        "seconds_mean": float(seconds.mean()),
        "seconds_median": float(np.median(seconds)),
        "seconds_p90": float(np.quantile(seconds, 0.9)),
        "seconds_max": float(seconds.max()),
        "share_under_2s": float((seconds <= 2.0).mean()),
        "cpu_seconds_mean": float(np.mean(cpu)),
        "cpu_seconds_median": float(np.median(cpu)),
        "cpu_seconds_p90": float(np.quantile(cpu, 0.9)),
        "weak_reasons": sum(r.weak for r, _, _ in calls),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--llm", type=Path, default=None, help="a local causal-LM folder or .gguf file (default SmolLM2)")
    ap.add_argument("--free", action="store_true", help="also without the opening (the model writes it all)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rec = Recommender.load(args.model, device="cpu")
    users = sorted(u for u, h in rec.histories.items() if len(h) >= 3)
    picked = list(np.random.default_rng(args.seed).choice(users, size=min(args.users, len(users)), replace=False))
    t = time.perf_counter()
    writer = rec.llm_writer(args.llm)
    assert isinstance(writer, LLMTextGenerator)
    load_s = time.perf_counter() - t
    timed = _Timed(writer)
    rec.explain(user=str(picked[0]), k=1, generator=timed)  # warm-up, not counted
    timed.calls.clear()
    timed.cpu.clear()
    load_before = os.getloadavg()
    for user in picked:
        rec.explain(user=str(user), k=1, generator=timed)
    result: dict[str, Any] = {
        "model": str(args.model),
        "llm": writer.name,
        "users": len(picked),
        "seed": args.seed,
        "threads": args.threads,
        "llm_load_seconds": load_s,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "with_opening": _summary(timed.calls, timed.cpu),
        "examples": [
            {
                "recent": [h.name for h in reason.history],
                "item": reason.item.name,
                "causes": [c.name for c in reason.causes],
                "weak": reason.weak,
                "text": out.text,
                "written_by": out.written_by,
                "fallback": out.fallback,
                "seconds": round(s, 3),
            }
            for reason, out, s in timed.calls
        ],
    }
    if args.free:
        free = _Timed(LLMTextGenerator(args.llm, catalogue=dict(zip(rec.raw_ids, rec.titles, strict=True)), opening=False))
        for reason, _, _ in timed.calls:
            free.write(reason)
        result["free"] = _summary(free.calls, free.cpu)
        result["free_examples"] = [
            {"item": r.item.name, "text": o.text, "written_by": o.written_by, "fallback": o.fallback} for r, o, _ in free.calls
        ]
    for mode in ("with_opening", "free"):
        if mode in result:
            s = result[mode]
            print(
                f"{mode}: {s['n']} reasons, check passed {s['pass_rate']:.0%}, fallbacks {s['fallbacks']}; seconds per "
                f"rationale mean {s['seconds_mean']:.2f}, median {s['seconds_median']:.2f}, p90 {s['seconds_p90']:.2f}, "
                f"max {s['seconds_max']:.2f}; <= 2 s: {s['share_under_2s']:.0%}; CPU seconds median "
                f"{s['cpu_seconds_median']:.2f}, p90 {s['cpu_seconds_p90']:.2f}; weak reasons {s['weak_reasons']}"
            )
    print(f"LLM {writer.name} loaded in {load_s:.1f} s; load average {load_before} -> {result['load_average_after']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
