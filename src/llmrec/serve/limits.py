"""What one request, and one batch call, may cost: `ServeLimits` and the check that answers 422 over a limit.

A plain request is one row of a shared forward pass plus a top-k: cheap whatever its ``k``. The options cost more,
and what they cost grows with a value in the request:

- ``diversity``: maximal-marginal-relevance re-ranking picks ``k`` items one at a time out of max(200, 5k)
  candidates, so its work grows with k² (k = 1000: 5,000 candidates, ~5M similarity updates per row), and every
  distinct (diversity, k) pair is a call of its own.
- ``query``: every distinct query text is a text-encoder pass and a call of its own.
- ``explain``: one extra scored row per history item the model reads (occlusion), per request.
- ``adapt``: a few gradient steps per request.

So a request may ask for at most ``max_diverse_k`` items with diversity and ``max_explain_k`` with explain, and a
batch call may hold at most ``max_option_requests`` requests with options, ``max_explained`` explained ones and
``max_groups`` distinct option groups (one group per distinct (query, diversity, adapt, k-with-diversity) of its
requests). These options run in their own
lane (``Service``): a bounded queue of ``options_queue`` requests, each answered within ``options_timeout`` seconds
or 504.
Limits are set with ``llmrec serve --max-diverse-k ...`` (docs/serving.md).

No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmrec.serve.errors import ApiError
from llmrec.serve.schemas import MAX_EXPLAIN_K, MAX_K, RecommendRequest

__all__ = ["ServeLimits", "check_costs", "group_key", "is_plain"]


@dataclass(frozen=True)
class ServeLimits:
    """Cost limits of the service (each >= 1; k limits at most 1000, the schema's bound)."""

    max_diverse_k: int = 100  # k of one request with diversity > 0
    max_explain_k: int = MAX_EXPLAIN_K  # k of one request with explain
    max_explained: int = 16  # requests with explain in one batch call
    max_option_requests: int = 32  # requests with any option in one batch call (diversity: ~0.1 s each at k = 100)
    max_groups: int = 8  # distinct option groups (query, diversity, adapt) in one batch call
    options_queue: int = 256  # requests with options queued or running at once; more get 503 overloaded
    options_timeout: float = 10.0  # seconds: a request with options is answered within this or gets 504

    def __post_init__(self) -> None:
        """A ValueError naming the `llmrec serve` option (--max-diverse-k ...) of a value out of range."""
        for name in ("max_diverse_k", "max_explain_k", "max_explained", "max_option_requests", "max_groups", "options_queue"):
            value = getattr(self, name)
            top = MAX_K if name in ("max_diverse_k", "max_explain_k") else 1 << 20
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise ValueError(f"--{name.replace('_', '-')}: must be an integer between 1 and {top}, got {value!r}")
        if not 0 < self.options_timeout <= 3600:
            raise ValueError(f"--options-timeout: must be between 0 and 3600 seconds, got {self.options_timeout!r}")


def is_plain(req: RecommendRequest) -> bool:
    """No option beyond the plain ranking: served by the micro-batcher's lane."""
    return not (req.explain or req.adapt or req.query is not None or (req.diversity or 0.0) > 0.0)


def group_key(query: str | None, diversity: float, adapt: bool, k: int) -> tuple[str | None, float, bool, int]:
    """The call a request without explain shares with others (`Service.run` groups by this)."""
    return (query, diversity, adapt, k if diversity > 0 else 0)


def _over(loc: list[str | int], msg: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": "over_limit"}


def check_costs(reqs: Sequence[RecommendRequest], limits: ServeLimits, *, batch: bool) -> None:
    """Raise ApiError 422 ``invalid_request`` naming each field over a limit (`errors`: loc, msg, type over_limit)."""
    problems: list[dict[str, Any]] = []
    groups: set[tuple[str | None, float, bool, int]] = set()
    n_explained = n_options = 0
    for i, r in enumerate(reqs):
        if is_plain(r):
            continue
        n_options += 1
        loc: list[str | int] = ["body", "requests", i, "k"] if batch else ["body", "k"]
        diversity = r.diversity or 0.0
        if r.explain:
            n_explained += 1
            if r.k > limits.max_explain_k:
                problems.append(_over(loc, f"k {r.k} is over the limit of {limits.max_explain_k} with explain"))
        elif diversity > 0 and r.k > limits.max_diverse_k:
            problems.append(_over(loc, f"k {r.k} is over the limit of {limits.max_diverse_k} with diversity"))
        if not r.explain:
            groups.add(group_key(r.query, diversity, r.adapt, r.k))
    if n_explained > limits.max_explained:
        problems.append(
            _over(
                ["body", "requests"],
                f"{n_explained} requests ask for explain; one call may explain at most {limits.max_explained}",
            )
        )
    if n_options > limits.max_option_requests:
        problems.append(
            _over(
                ["body", "requests"],
                f"{n_options} requests ask for options (diversity, query, explain, adapt); one call may hold at most "
                f"{limits.max_option_requests}",
            )
        )
    if len(groups) > limits.max_groups:
        problems.append(
            _over(
                ["body", "requests"],
                f"{len(groups)} distinct option groups (query, diversity, adapt; diversity by k) in one call; "
                f"at most {limits.max_groups}",
            )
        )
    if problems:
        shown = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ApiError(422, "invalid_request", shown + more, errors=problems)
