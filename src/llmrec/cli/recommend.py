"""Recommendation commands: ``llmrec recommend`` (one user or history; or, with --users and --out, many users into
a file) and ``llmrec explain``. Each loads the model (`llmrec.recommend.Recommender`), makes one call
(``recommend``, ``explain`` or `llmrec.batch.write_recommendations`) and prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from llmrec.cli.common import DEVICE_HELP, Threads, console, say, use_threads, user_errors, warnings_as_lines
from llmrec.config import QUERY_WEIGHT

if TYPE_CHECKING:
    from llmrec.filters import ItemFilter
    from llmrec.recommend import Recommender

__all__ = ["explain_cmd", "recommend_cmd"]

_DIVERSITY_HELP = "0..1: re-rank the top candidates for variety (maximal marginal relevance, λ = 1 − diversity)."
_QUERY_HELP = 'What you are in the mood for, in words, e.g. "a light-hearted animated film for the kids".'
_QUERY_WEIGHT_HELP = "0..1: weight of --query against your history (0 = history only, 1 = query only)."
_GENERATOR_HELP = "A local causal-LM folder or .gguf file that writes the reasons (implies --llm-text)."
_LLM_TEXT_HELP = (
    "The reasons written by an LLM (default SmolLM2-135M-Instruct, or --generator), checked: a text naming an item "
    "the attribution does not support is replaced by the template's."
)
_EXCLUDE_SEEN_HELP = (
    "Leave out items already in the history, or let them come back (--include-seen: re-purchase domains) "
    "[default: the model's rule, chosen on validation when it was trained; leave out for older models]."
)
_STRICT_HELP = "Refuse unknown ids (exit 2) instead of skipping unknown history items and giving unknown users the popular items."
_IDS = "comma-separated"
_NEW_ITEMS_HELP = (
    "Keep the last N of the k places for the best-scored new items (no event in the model's stored histories, or "
    "held out of training by a cold-item split), when the top k-N do not already hold them; 0 = off."
)


IncludeItems = Annotated[str | None, typer.Option(help=f"Recommend only these item ids ({_IDS}).")]
ExcludeItems = Annotated[str | None, typer.Option(help=f"Never recommend these item ids ({_IDS}).")]
ExcludeItemsFile = Annotated[Path | None, typer.Option(help="Never recommend the item ids in this text file, one per line.")]
IncludeCategories = Annotated[
    str | None, typer.Option(help=f"Recommend only items in one of these categories ({_IDS}; any case).")
]
ExcludeCategories = Annotated[str | None, typer.Option(help=f"Never recommend items in these categories ({_IDS}; any case).")]
IncludeUnavailable = Annotated[
    bool, typer.Option("--include-unavailable", help="Also recommend items the catalogue marks unavailable.")
]
NewItems = Annotated[int, typer.Option("--new-items", help=_NEW_ITEMS_HELP)]


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _item_filter(
    include_items: str | None,
    exclude_items: str | None,
    exclude_items_file: Path | None,
    include_categories: str | None,
    exclude_categories: str | None,
    include_unavailable: bool,
) -> ItemFilter:
    """The business rules of the command line as an `llmrec.filters.ItemFilter`."""
    from llmrec.filters import ItemFilter, read_id_file

    excluded = _split(exclude_items)
    if exclude_items_file is not None:
        excluded = [*(excluded or []), *read_id_file(str(exclude_items_file))]
    return ItemFilter.of(
        _split(include_items), excluded, _split(include_categories), _split(exclude_categories), include_unavailable
    )


def _request(
    model: Path, user: str | None, history: str | None, k: int, device: str = "cpu", new_items: int = 0
) -> tuple[Recommender, list[str] | None]:
    """Shared checks of `recommend` and `explain`: exactly one of --user/--history, k >= 1, 0 <= --new-items <= k;
    loads the model."""
    if (user is None) == (history is None):
        raise ValueError("give exactly one of --user ID or --history ID,ID,... (or --users all|FILE with --out)")
    _check_k(k, new_items)
    from llmrec.recommend import Recommender

    hist = [h.strip() for h in history.split(",") if h.strip()] if history is not None else None
    return Recommender.load(model, device=device), hist


def _check_k(k: int, new_items: int) -> None:
    if k < 1:
        raise ValueError(f"-k must be >= 1, got {k}")
    if not 0 <= new_items <= k:
        raise ValueError(f"--new-items must be in 0..k ({k}): the list's last N places hold new items, got {new_items}")


def recommend_cmd(
    model: Annotated[Path, typer.Option(help="Model artifact folder.")],
    user: Annotated[str | None, typer.Option(help="A raw user id known to the model.")] = None,
    history: Annotated[str | None, typer.Option(help="Raw item ids, oldest first, comma-separated.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many items.")] = 10,
    exclude_seen: Annotated[bool | None, typer.Option("--exclude-seen/--include-seen", help=_EXCLUDE_SEEN_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Add why: the history items behind each item, in words.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help=_STRICT_HELP)] = False,
    include_items: IncludeItems = None,
    exclude_items: ExcludeItems = None,
    exclude_items_file: ExcludeItemsFile = None,
    include_categories: IncludeCategories = None,
    exclude_categories: ExcludeCategories = None,
    include_unavailable: IncludeUnavailable = False,
    new_items: NewItems = 0,
    columns: Annotated[
        str | None,
        typer.Option(help="Batch: catalogue columns to add, e.g. title,categories [default: those the catalogue has]."),
    ] = None,
    diversity: Annotated[float, typer.Option(help=_DIVERSITY_HELP)] = 0.0,
    query: Annotated[str | None, typer.Option(help=_QUERY_HELP)] = None,
    query_weight: Annotated[float, typer.Option(help=_QUERY_WEIGHT_HELP)] = QUERY_WEIGHT,
    generator: Annotated[Path | None, typer.Option(help=_GENERATOR_HELP)] = None,
    llm_text: Annotated[bool, typer.Option("--llm-text", help=_LLM_TEXT_HELP)] = False,
    users: Annotated[
        str | None,
        typer.Option(help="Batch: all (every user the model knows) or a text file of user ids, one per line; with --out."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Batch: the file to write, .parquet or .csv: one row per user and rank (user, rank, item, score)."
        ),
    ] = None,
    chunk_size: Annotated[int, typer.Option(help="Batch: users scored (and written) per chunk.")] = 1024,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    threads: Threads = 0,
) -> None:
    """Top-k recommendations for a known user or a given history; or, with --users and --out, for many users into a file."""
    with user_errors():
        use_threads(threads)
        rules = _item_filter(
            include_items, exclude_items, exclude_items_file, include_categories, exclude_categories, include_unavailable
        )
    if users is not None or out is not None:
        if llm_text or generator is not None:
            with user_errors():
                raise ValueError("--llm-text and --generator word one user's --explain; they do not go with --users/--out")
        options = {"query": query, "query_weight": query_weight, "diversity": diversity, "filters": rules, "new_items": new_items}
        _recommend_batch(model, users, out, k, exclude_seen, chunk_size, device, user, history, explain, strict, columns, options)
        return
    if explain or llm_text or generator is not None:  # a writer for the reasons implies --explain
        writer = generator if generator is not None else llm_text
        _explain(
            model, user, history, k, exclude_seen, as_json, "occlusion", diversity, query, query_weight, writer, rules, new_items
        )
        return
    with user_errors(), warnings_as_lines():  # unknown ids and categories: one `warning: ...` line each
        rec, hist = _request(model, user, history, k, device, new_items)
        recs = rec.recommend(
            history=hist,
            user=user,
            k=k,
            exclude_seen=exclude_seen,
            query=query,
            query_weight=query_weight,
            diversity=diversity,
            strict=strict,
            include_items=rules.include_items,
            exclude_items=rules.exclude_items,
            include_categories=rules.include_categories,
            exclude_categories=rules.exclude_categories,
            include_unavailable=rules.include_unavailable,
            new_items=new_items,
        )
    if recs.fallback is not None and not recs.ignored_items and (user is None or user in rec.histories):
        say(f"nothing known to go on: the {recs.fallback} items (fallback: {recs.fallback})", err=True)
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in recs], indent=2))
        return
    table = Table("rank", "item", "score", "title", title=f"top {k}")
    for r in recs:
        table.add_row(str(r.rank), r.item_id, f"{r.score:.4f}", r.title or "")
    console.print(table)


def _recommend_batch(
    model: Path,
    users: str | None,
    out: Path | None,
    k: int,
    exclude_seen: bool | None,
    chunk_size: int,
    device: str,
    user: str | None,
    history: str | None,
    explain: bool,
    strict: bool,
    columns: str | None,
    options: dict[str, Any],
) -> None:
    """`recommend --users all|FILE --out recs.parquet`: every listed user's top-k, streamed to one file."""
    with user_errors():
        if users is None or out is None:
            raise ValueError("batch recommendations need both --users all|FILE and --out FILE.parquet|FILE.csv")
        if user is not None or history is not None or explain:
            raise ValueError("--users goes without --user, --history and --explain")
        _check_k(k, int(options.get("new_items", 0)))
        if chunk_size < 1:
            raise ValueError(f"--chunk-size must be >= 1, got {chunk_size}")
        from llmrec.batch import FORMATS, parse_columns, read_user_ids, write_recommendations
        from llmrec.outputs import claim_file
        from llmrec.recommend import Recommender

        chosen = None if columns is None else parse_columns(columns)
        users_file = None if users == "all" else Path(users)
        with claim_file(out, inputs={"--model": model, "--users": users_file}) as target:  # before any work
            if out.suffix not in FORMATS:
                raise ValueError(f"--out {out}: must end in .parquet or .csv")
            rec = Recommender.load(model, device=device)
            ids = list(rec.histories) if users_file is None else read_user_ids(users_file)
            with warnings_as_lines():  # unknown users (the popular items) and categories: a `warning: ...` line each
                rows = write_recommendations(
                    rec,
                    ids,
                    target,
                    k=k,
                    exclude_seen=exclude_seen,
                    chunk_size=chunk_size,
                    progress=True,
                    strict=strict,
                    columns=chosen,
                    **options,
                )
    say(f"wrote {rows:,} recommendations for {len(ids):,} users → {out}")


def explain_cmd(
    model: Annotated[Path, typer.Option(help="Model artifact folder.")],
    user: Annotated[str | None, typer.Option(help="A raw user id known to the model.")] = None,
    history: Annotated[str | None, typer.Option(help="Raw item ids, oldest first, comma-separated.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many items.")] = 5,
    exclude_seen: Annotated[bool | None, typer.Option("--exclude-seen/--include-seen", help=_EXCLUDE_SEEN_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    method: Annotated[str, typer.Option(help="occlusion (exact) | gradient (gradient × input, LM only).")] = "occlusion",
    diversity: Annotated[float, typer.Option(help=_DIVERSITY_HELP)] = 0.0,
    query: Annotated[str | None, typer.Option(help=_QUERY_HELP)] = None,
    query_weight: Annotated[float, typer.Option(help=_QUERY_WEIGHT_HELP)] = QUERY_WEIGHT,
    generator: Annotated[Path | None, typer.Option(help=_GENERATOR_HELP)] = None,
    llm_text: Annotated[bool, typer.Option("--llm-text", help=_LLM_TEXT_HELP)] = False,
    include_items: IncludeItems = None,
    exclude_items: ExcludeItems = None,
    exclude_items_file: ExcludeItemsFile = None,
    include_categories: IncludeCategories = None,
    exclude_categories: ExcludeCategories = None,
    include_unavailable: IncludeUnavailable = False,
    new_items: NewItems = 0,
    threads: Threads = 0,
) -> None:
    """Recommend, and show which history items drove each recommendation (attribution scores and a reason)."""
    with user_errors():
        use_threads(threads)
        rules = _item_filter(
            include_items, exclude_items, exclude_items_file, include_categories, exclude_categories, include_unavailable
        )
    writer = generator if generator is not None else llm_text
    _explain(model, user, history, k, exclude_seen, as_json, method, diversity, query, query_weight, writer, rules, new_items)


def _explain(
    model: Path,
    user: str | None,
    history: str | None,
    k: int,
    exclude_seen: bool | None,
    as_json: bool,
    method: str,
    diversity: float,
    query: str | None,
    query_weight: float,
    llm_text: bool | Path,
    rules: ItemFilter,
    new_items: int = 0,
) -> None:
    """`explain` and `recommend --explain`: one table row (or JSON object) per item, with its reason (the
    "because of" column lists the history items the reason names, nothing when it names none)."""
    with user_errors(), warnings_as_lines():
        rec, hist = _request(model, user, history, k, new_items=new_items)
        explanations = rec.explain(
            history=hist,
            user=user,
            k=k,
            exclude_seen=exclude_seen,
            query=query,
            query_weight=query_weight,
            diversity=diversity,
            method=method,
            llm_text=llm_text,
            include_items=rules.include_items,
            exclude_items=rules.exclude_items,
            include_categories=rules.include_categories,
            exclude_categories=rules.exclude_categories,
            include_unavailable=rules.include_unavailable,
            new_items=new_items,
        )
    if as_json:
        rows = [
            {
                **e.recommendation.__dict__,
                "reason": e.text,
                "because_of": list(e.cited),
                "written_by": e.written_by,
                "fallback": e.fallback,
                "contributions": [c.__dict__ for c in e.contributions],
            }
            for e in explanations
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("rank", "item", "score", "title", "because of (attribution)", "reason", title=f"top {k}, explained")
    for e in explanations:
        r = e.recommendation
        cited = [c for c in e.contributions if c.item_id in e.cited]  # what the reason names, as it names it
        causes = "\n".join(f"{c.title or c.item_id} ({c.weight:+.3f})" for c in cited) or "-"
        table.add_row(str(r.rank), r.item_id, f"{r.score:.4f}", r.title or "", causes, e.text)
    console.print(table)
    if llm_text is not False:
        by_llm = sum(e.written_by == "llm" for e in explanations)
        failed = [e for e in explanations if e.fallback]
        say(
            f"reasons written by the LLM: {by_llm} of {len(explanations)}"
            + ("; the template's where its text failed the check:" if failed else "")
        )
        for e in failed:
            say(f"  rank {e.recommendation.rank}: {e.fallback}")
