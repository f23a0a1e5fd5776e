"""Statistics over per-example ranks: user segments, bootstrap confidence intervals and paired tests.

`segment_metrics` summarises by history length and target-popularity tercile. `bootstrap_ci` is a percentile
bootstrap over users; `paired_test` compares two models on the same users with a paired bootstrap CI of the mean
difference and a sign-flip permutation p-value. Plain numpy: no model and no torch needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from llmrec.eval.metrics import DEFAULT_KS, summarize

__all__ = [
    "HISTLEN_SEGMENTS",
    "MAX_N_BOOT",
    "POP_SEGMENTS",
    "bootstrap_ci",
    "bootstrap_means",
    "check_n_boot",
    "paired_test",
    "segment_metrics",
]

FloatArray = npt.NDArray[np.float64]

# Most bootstrap resamples: 100,000 take about 70 s per bootstrap of beauty's 22k users on one busy CPU thread
# (10,000: 6.7 s), and a percentile interval's Monte Carlo error is far below its sampling error long before;
# 10^10 would allocate ~600 GiB.
MAX_N_BOOT = 100_000

# (name, shortest, longest) history length per segment; None = no upper bound. Length 0 (a user whose
# only known item is the target) joins the shortest bucket rather than getting a bucket of its own.
HISTLEN_SEGMENTS: tuple[tuple[str, int, int | None], ...] = (
    ("histlen 1-3", 0, 3),
    ("histlen 4-7", 4, 7),
    ("histlen 8-15", 8, 15),
    ("histlen 16+", 16, None),
)
POP_SEGMENTS: tuple[str, str, str] = ("pop low", "pop mid", "pop high")

# Elements per temporary array in the bootstrap/permutation loops: bounds memory (~32 MB of float64)
# whatever the number of users, while keeping each numpy call large enough to be fast.
_CHUNK_ELEMENTS = 1 << 22


# ----------------------------------------------------------------------------------------------------
# Segments
# ----------------------------------------------------------------------------------------------------


def segment_metrics(
    ranks: npt.ArrayLike,
    history_lengths: npt.ArrayLike | None,
    target_popularity: npt.ArrayLike | None,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, dict[str, float]]:
    """Summary metrics per user segment, each with ``n`` (examples in it).

    Segments: history length (`HISTLEN_SEGMENTS`; length 0 counts as 1-3) and target-popularity terciles
    (`POP_SEGMENTS`). target_popularity[i] is the training count of example i's target; tercile edges are
    the 1/3 and 2/3 quantiles of those values, low = ``<= q1``, mid = ``(q1, q2]``, high = ``> q2``
    (heavily tied counts can make the groups unequal). Either input may be None to skip its segments.
    Empty segments are kept with n = 0 and NaN metrics so tables keep the same rows across models.
    """
    r = np.asarray(ranks, dtype=np.float64)
    out: dict[str, dict[str, float]] = {}

    def add(name: str, mask: npt.NDArray[np.bool_]) -> None:
        out[name] = {"n": int(mask.sum()), **summarize(r[mask], ks)}

    if history_lengths is not None:
        lengths = np.asarray(history_lengths, dtype=np.int64)
        if lengths.shape != r.shape:
            raise ValueError(f"history_lengths has shape {lengths.shape}, ranks {r.shape}")
        for name, lo, hi in HISTLEN_SEGMENTS:
            mask = lengths >= lo if hi is None else (lengths >= lo) & (lengths <= hi)
            add(name, mask)
    if target_popularity is not None:
        pop = np.asarray(target_popularity, dtype=np.float64)
        if pop.shape != r.shape:
            raise ValueError(f"target_popularity has shape {pop.shape}, ranks {r.shape}")
        if pop.size:
            q1, q2 = np.quantile(pop, [1 / 3, 2 / 3])
        else:
            q1 = q2 = 0.0
        low, mid, high = POP_SEGMENTS
        add(low, pop <= q1)
        add(mid, (pop > q1) & (pop <= q2))
        add(high, pop > q2)
    return out


# ----------------------------------------------------------------------------------------------------
# Confidence intervals and paired tests
# ----------------------------------------------------------------------------------------------------


def bootstrap_means(values: FloatArray, n_boot: int, rng: np.random.Generator) -> FloatArray:
    """[N, M] per-example values -> [n_boot, M] means over resampled users (with replacement).

    Each replicate is drawn as per-user counts (bincount of the resampled indices) and applied with one
    matrix product, so all M metrics share the same resamples and the cost does not grow with M.
    """
    check_n_boot(n_boot)
    n = values.shape[0]
    out = np.empty((n_boot, values.shape[1]), dtype=np.float64)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        c = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(c, n))  # [c, N]
        offsets = (np.arange(c) * n)[:, None]
        counts = np.bincount((idx + offsets).ravel(), minlength=c * n).reshape(c, n)  # [c, N]
        out[start : start + c] = counts @ values / n
    return out


def check_n_boot(n_boot: int, name: str = "n_boot") -> None:
    """A ValueError naming `name` unless 0 <= n_boot <= MAX_N_BOOT (checked before any work)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or not 0 <= n_boot <= MAX_N_BOOT:
        raise ValueError(f"{name} must be between 0 and {MAX_N_BOOT:,}, got {n_boot!r}")


def _as_per_example(values: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def bootstrap_ci(
    per_example: npt.ArrayLike, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of a per-user metric and its percentile-bootstrap (1 - alpha) interval."""
    values = _as_per_example(per_example, "per_example")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    means = bootstrap_means(values[:, None], n_boot, np.random.default_rng(seed))[:, 0]
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(values.mean()), float(lo), float(hi)


def paired_test(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    n_permutations: int = 10_000,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Compare two models' per-user metric arrays on the same users, in the same order.

    Returns ``mean_a``, ``mean_b``, ``mean_diff`` (a - b), ``ci_lo``/``ci_hi`` (paired percentile
    bootstrap of the mean difference), ``p_value`` (two-sided paired sign-flip permutation test: under
    the null each user's difference is equally likely to have either sign) and ``n``. The p-value counts
    the observed assignment, (1 + #as-extreme) / (1 + n_permutations), so it is never exactly 0.
    """
    x = _as_per_example(a, "a")
    y = _as_per_example(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must cover the same users: shapes {x.shape} and {y.shape}")
    if n_boot < 1 or n_permutations < 1:
        raise ValueError("n_boot and n_permutations must be >= 1")
    d = x - y  # [N]
    n = d.shape[0]
    boot_rng, perm_rng = np.random.default_rng(seed).spawn(2)

    boot = bootstrap_means(d[:, None], n_boot, boot_rng)[:, 0]
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])

    # Flipping the signs of the users where a random bit is 1 gives sum(d) - 2 * bits @ d; random bits
    # come from raw bytes (8 per byte), much cheaper than drawing one float per user per permutation.
    observed = abs(float(d.sum()))
    total = float(d.sum())
    as_extreme = 0
    chunk = max(1, _CHUNK_ELEMENTS // n)
    n_bytes = (n + 7) // 8
    for start in range(0, n_permutations, chunk):
        c = min(chunk, n_permutations - start)
        raw = np.frombuffer(perm_rng.bytes(c * n_bytes), dtype=np.uint8).reshape(c, n_bytes)
        bits = np.unpackbits(raw, axis=1, count=n).astype(np.float64)  # [c, N]
        flipped = np.abs(total - 2.0 * (bits @ d))  # [c]
        # Tolerance: sums that are equal in exact arithmetic can differ in the last bits.
        as_extreme += int((flipped >= observed - 1e-9 * max(1.0, observed)).sum())
    p_value = (1 + as_extreme) / (1 + n_permutations)

    return {
        "mean_a": float(x.mean()),
        "mean_b": float(y.mean()),
        "mean_diff": float(d.mean()),
        "ci_lo": float(lo),
        "ci_hi": float(hi),
        "p_value": float(p_value),
        "n": float(n),
    }
