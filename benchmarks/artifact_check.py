"""What checking an artifact's manifest and weights adds to loading it: `Recommender.load` of a 12k-item model with
the checks on and off.

Usage: python benchmarks/artifact_check.py [--work DIR] [--items 12101] [--users 22363] [--repeats 15]
                                           [--model next-item-lm]

Builds, once, in --work, a synthetic prepared dataset of beauty's size (12,101 items, 22,363 users, about 9 events
each) and an untrained artifact of --model with its default config (what loading costs does not depend on the
weights' values), then times `Recommender.load(path, ann="off", device="cpu")` in this process, --repeats times in
each mode, in turn (torch and polars already imported, the files in the operating system's cache):

    unchecked   no manifest check, no finite check (the loader before manifests)
    sizes       each listed file's size against the manifest, and the finite check
    full        sizes, then each file's SHA-256 (the default), and the finite check

The per-process cache of verified folders is cleared before each load, so every `full` load hashes every file.
The two checks are also timed alone (`checks_median_s`: the manifest's sizes and hashes, then the finite check
on the loaded state dict), which a busy machine blurs less than the difference of two load times. Prints one JSON
line: median and min per mode, the overhead of each in % of `unchecked`, the checks alone, the artifact's bytes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl


def build(work: Path, n_items: int, n_users: int, model_type: str) -> Path:
    """The synthetic dataset and artifact under `work` (reused when present)."""
    from llmrec.artifact import save_artifact
    from llmrec.data import PrepareConfig, RawData, prepare
    from llmrec.models import model_spec

    out = work / "model"
    if (out / "manifest.json").is_file():
        return out
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 14, size=n_users)
    users = np.repeat(np.arange(n_users), lengths)
    items = rng.integers(0, n_items, size=len(users))
    items[:n_items] = np.arange(n_items)  # every item occurs
    events = pl.DataFrame({"user": users.astype(str), "item": items.astype(str), "time": np.arange(len(users), dtype=np.int64)})
    catalogue = pl.DataFrame({"item": np.arange(n_items).astype(str), "title": [f"Item {i}" for i in range(n_items)]})
    raw = RawData(events=events, items=catalogue, users=None, domain="generic", source_files=[])
    dataset = prepare(raw, PrepareConfig())
    spec = model_spec(model_type)
    model = spec.model_class(spec.config(n_items=dataset.n_items))  # type: ignore[call-arg]
    save_artifact(model, dataset, out)
    return out


def timed(load: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        load()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path(".tmp/artifact-check"))
    parser.add_argument("--items", type=int, default=12_101)
    parser.add_argument("--users", type=int, default=22_363)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--model", default="next-item-lm")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from llmrec import artifact
    from llmrec.recommend import Recommender

    path = build(args.work, args.items, args.users, args.model)
    real_verify, real_finite = artifact.verify_manifest, artifact.check_finite
    entries = artifact._manifest_entries(path) or {}
    checks: dict[str, tuple[Callable[..., bool], Callable[..., None]]] = {
        "unchecked": (lambda folder: True, lambda weights, tensors=None: None),
        "sizes": (lambda folder: _sizes_only(Path(folder), entries), real_finite),
        "full": (real_verify, real_finite),
    }

    def load() -> None:
        artifact._VERIFIED.clear()
        Recommender.load(path, ann="off", device="cpu")

    modes: dict[str, list[float]] = {mode: [] for mode in checks}
    load()  # warm the file cache and the imports
    for _ in range(args.repeats):
        for mode, (verify, finite) in checks.items():  # in turn, so that a slower minute hits every mode
            artifact.verify_manifest, artifact.check_finite = verify, finite  # type: ignore[assignment]
            modes[mode] += timed(load, 1)
    artifact.verify_manifest, artifact.check_finite = real_verify, real_finite
    base = statistics.median(modes["unchecked"])
    result = {
        "items": args.items,
        "model": args.model,
        "artifact_bytes": sum(p.stat().st_size for p in path.iterdir() if p.is_file()),
        "repeats": args.repeats,
        **{f"{m}_median_s": round(statistics.median(t), 4) for m, t in modes.items()},
        **{f"{m}_min_s": round(min(t), 4) for m, t in modes.items()},
        **{f"{m}_overhead_pct": round(100 * (statistics.median(t) / base - 1), 1) for m, t in modes.items() if m != "unchecked"},
    }
    state = Recommender.load(path, ann="off", device="cpu").model.state_dict()  # type: ignore[attr-defined]

    def verify() -> None:
        artifact._VERIFIED.clear()
        real_verify(path)

    checks_s = [
        a + b
        for a, b in zip(
            timed(verify, args.repeats), timed(lambda: real_finite(path / "model.safetensors", state), args.repeats), strict=True
        )
    ]
    result["checks_median_s"] = round(statistics.median(checks_s), 4)  # both checks alone, back to back
    result["checks_pct_of_unchecked_load"] = round(100 * statistics.median(checks_s) / base, 1)
    print(json.dumps(result))


def _sizes_only(folder: Path, entries: dict[str, tuple[int, str]]) -> bool:
    for name, (size, _) in entries.items():
        if (folder / name).stat().st_size != size:
            raise AssertionError(name)
    return True


if __name__ == "__main__":
    main()
