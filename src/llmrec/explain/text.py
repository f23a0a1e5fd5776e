"""Short natural-language reasons for a recommendation, built from attributions and item metadata only.

    reason = Reason(item=ItemInfo("195", "The Terminator (1984)", ("Action", "Sci-Fi", "Thriller")),
                    causes=(ItemInfo("183", "Alien (1979)", ("Action", "Horror", "Sci-Fi", "Thriller")), ...),
                    domain="movies")
    TemplateGenerator().generate(reason)
    # "Because you watched Alien (1979) and Aliens (1986): the model's score for The Terminator (1984) depends
    #  most on these Action/Sci-Fi films in your history."

Generators share one interface, `TextGenerator.generate(reason) -> str`. The template generator is the default:
every title and category in its text is copied from the metadata (a category is named only when the
recommended item and every cited history item have it), the verb comes from the dataset's domain, and the
sentence states what was measured: which history items the model's score for the item depends on most
(attribution), never a statistic nobody computed ("viewers often watch X next"). When a text query shaped the
list (`Reason.query`), the text says so.

`LLMTextGenerator` has a local LLM (`llmrec.index.llm`, default SmolLM2-135M-Instruct) word the same facts and the
user's recent items. A model can write things that are not in its prompt, so its text is checked
(`check_rationale`): every item title it names (`TitleMatcher`: a title's first words, over the catalogue and the
reason's items) must be the recommended item or one the attribution supports; otherwise the template's sentence
is used and `write` records why (`Rationale.fallback`).

No torch here: transformers (and with it torch) is imported only when an `LLMTextGenerator` is built.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = [
    "DOMAIN_PHRASES",
    "DomainPhrases",
    "ItemInfo",
    "LLMTextGenerator",
    "Rationale",
    "Reason",
    "TemplateGenerator",
    "TextGenerator",
    "TitleMatcher",
    "check_rationale",
    "load_text_generator",
    "shared_categories",
    "short_name",
    "write_reason",
]


@dataclass(frozen=True)
class ItemInfo:
    """What the catalogue says about one item."""

    item_id: str  # raw item id
    title: str | None = None
    categories: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.title or f"item {self.item_id}"


@dataclass(frozen=True)
class Reason:
    """The facts behind one recommendation: the item and the history items that raised its score most."""

    item: ItemInfo
    causes: tuple[ItemInfo, ...]  # strongest first; only items whose attribution is positive; never `item`
    domain: str = "generic"
    query: str | None = None  # the text request blended into the ranking, if any
    weak: bool = False  # no history item passes the test for a reason (`llmrec.explain.attribution.occlusion_reasons`)
    history: tuple[ItemInfo, ...] = ()  # the user's most recent items, oldest first (context for an LLM's text)


@dataclass(frozen=True)
class DomainPhrases:
    past: str  # "Because you {past} A"
    audience: str  # people of the domain ("viewers of"), for generators that word a reason their own way
    present: str  # the domain's verb in the present ("watch")
    noun: str  # singular item noun
    nouns: str  # plural


DOMAIN_PHRASES: dict[str, DomainPhrases] = {
    "movies": DomainPhrases("watched", "viewers of", "watch", "film", "films"),
    "ecommerce": DomainPhrases("bought", "shoppers who bought", "buy", "product", "products"),
    "music": DomainPhrases("listened to", "listeners of", "listen to", "title", "titles"),
    "news": DomainPhrases("read", "readers of", "read", "article", "articles"),
    "generic": DomainPhrases("chose", "people who chose", "choose", "item", "items"),
}


def _phrases(domain: str) -> DomainPhrases:
    return DOMAIN_PHRASES.get(domain, DOMAIN_PHRASES["generic"])


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def shared_categories(reason: Reason, limit: int = 2) -> list[str]:
    """Categories of the recommended item that every cited history item has too (in the item's own order)."""
    if not reason.causes:
        return []
    common = set(reason.item.categories).intersection(*(c.categories for c in reason.causes))
    return [c for c in reason.item.categories if c in common][:limit]


class TextGenerator(Protocol):
    def generate(self, reason: Reason) -> str: ...


class TemplateGenerator:
    """Deterministic sentence from the metadata; the default generator."""

    def generate(self, reason: Reason) -> str:
        p = _phrases(reason.domain)
        shaped = f' Your request "{reason.query}" also shaped this list.' if reason.query else ""
        causes = [c for c in reason.causes if c.item_id != reason.item.item_id]  # an item never explains itself
        if reason.weak:
            return (
                f"Recommended to you: {reason.item.name}. No item in your history moves the model's score for it "
                f"enough to be named as the reason.{shaped}"
            )
        if not causes:
            return (
                f"Recommended to you: {reason.item.name} (no single item in your history stands out in the "
                f"model's score for it).{shaped}"
            )
        one = len(causes) == 1
        cats = shared_categories(Reason(reason.item, tuple(causes), reason.domain))
        kind = ("/".join(cats) + " " if cats else "") + (p.noun if one else p.nouns)
        return (
            f"Because you {p.past} {_join([c.name for c in causes])}: the model's score for {reason.item.name} "
            f"depends most on {'this' if one else 'these'} {kind} in your history.{shaped}"
        )


# ---- the LLM's text and its check -----------------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9]+")
# Words a name or an unfinished sentence (cut at max_new_tokens) cannot end on: dropped.
_DANGLING = frozenset("a an and as at but by for from in into of on or so than that the their to which who with your".split())


def _words(text: str) -> list[str]:
    """Lower-case alphanumeric words: how titles and text are compared ("Burt's Bees" -> burt, s, bees)."""
    return _WORD.findall(text.lower())


def short_name(title: str, max_words: int = 8) -> str:
    """The part of a title an LLM is shown: HTML entities decoded, up to the first comma (when 3 words or more
    are left), at most `max_words` words, without a dangling last word ("... Concentrate for")."""
    title = html.unescape(title)
    head = title.split(",")[0].strip()
    words = (head if len(head.split()) >= 3 else title).split()[:max_words]
    while len(words) > 1 and words[-1].lower() in _DANGLING:
        words.pop()
    return " ".join(words)


class TitleMatcher:
    """Which item titles a text names: a title is named when the first `n_words` words of its `short_name` (all
    of them when it is shorter) occur in the text in order, compared as lower-case alphanumeric words. A prefix
    rather than the whole title because a writer shortens long product titles ("OPI Nail Lacquer, Simmer and
    Shimmer, 0.5-Fluid Ounce" -> "OPI Nail Lacquer", which is also all the LLM is shown); `n_words` = 4 keeps the
    prefix distinctive on shop catalogues. Items that share the prefix cannot be told apart in a text.
    Titles of fewer than `min_words` words are not looked for in the catalogue (a one-word title such as
    "Shampoo" would match plain words); items given to `mentions` explicitly are always looked for."""

    def __init__(self, titles: dict[str, str | None] | None = None, *, n_words: int = 4, min_words: int = 2) -> None:
        self.n_words = n_words
        self.min_words = min_words
        self.keys: dict[tuple[str, ...], set[str]] = {}  # title prefix -> raw item ids with it
        for item_id, title in (titles or {}).items():
            key = self.key(title or "")
            if len(key) >= min_words:
                self.keys.setdefault(key, set()).add(item_id)

    def key(self, title: str) -> tuple[str, ...]:
        """The words looked for: the first `n_words` of the title's `short_name` (what an LLM is shown)."""
        return tuple(_words(short_name(title))[: self.n_words])

    def mentions(self, text: str, items: Sequence[ItemInfo] = ()) -> list[tuple[str, tuple[str, ...], range]]:
        """Every (raw item id, title prefix, word positions in `text`) found, over the catalogue and `items`."""
        words = _words(text)
        extra: dict[tuple[str, ...], set[str]] = {}  # the items' own prefixes, beside the catalogue's
        for item in items:
            key = self.key(item.title or "")
            if key:
                extra.setdefault(key, set()).add(item.item_id)
        found = []
        for n in range(1, self.n_words + 1):
            for i in range(len(words) - n + 1):
                gram = tuple(words[i : i + n])
                for item_id in sorted(self.keys.get(gram, set()) | extra.get(gram, set())):
                    found.append((item_id, gram, range(i, i + n)))
        return found

    def named(self, text: str, items: Sequence[ItemInfo] = ()) -> dict[str, tuple[str, ...]]:
        """{raw item id: the title prefix found in `text`} over the catalogue and `items`."""
        return {item_id: key for item_id, key, _ in self.mentions(text, items)}


def _covered(text: str, names: Sequence[str]) -> set[int]:
    """Word positions of `text` inside an occurrence of one of `names` (each compared as words)."""
    words = _words(text)
    out: set[int] = set()
    for name in names:
        target = _words(name)
        n = len(target)
        for i in range(len(words) - n + 1) if n else ():
            if words[i : i + n] == target:
                out.update(range(i, i + n))
    return out


@dataclass(frozen=True)
class Rationale:
    """A reason's text and who wrote it; `fallback` says why an LLM's text was replaced by the template's."""

    text: str
    written_by: str  # "template" | "llm" | "custom" (a generator of your own)
    fallback: str | None = None


def check_rationale(text: str, reason: Reason, matcher: TitleMatcher | None = None) -> str | None:
    """None when `text` names the recommended item and no item beyond what the attribution supports (the
    recommended item and `reason.causes`); otherwise why not. Checked against the catalogue (`matcher`) and the
    reason's own items (history, causes, item). A title prefix found in the text is not counted against it when a
    supported item's prefix is the same words (the two cannot be told apart), or when it lies inside a supported
    item's name as the text writes it ("Tropic Isle Living Jamaican Black Castor Oil" holds the title "Jamaican
    Black Castor Oil Treatment" of another item)."""
    if len(_words(text)) < 3:
        return "the text is empty"
    matcher = matcher or TitleMatcher()
    supported_items = (reason.item, *reason.causes)
    supported = {i.item_id for i in supported_items}
    supported_keys = {matcher.key(i.title or "") for i in supported_items}
    covered = _covered(text, [short_name(i.title) for i in supported_items if i.title])
    shown = (*reason.history, *reason.causes, reason.item)
    mentions = matcher.mentions(text, shown)
    if reason.item.title and reason.item.item_id not in {item_id for item_id, _, _ in mentions}:
        return "the text does not name the recommended item"
    for item_id, key, where in mentions:
        if item_id in supported or key in supported_keys or set(where) <= covered:
            continue
        title = next((i.title for i in shown if i.item_id == item_id), None)
        return f"names item {item_id}" + (f" ({title})" if title else "") + ", which the attribution does not support"
    return None


class LLMTextGenerator:
    """A local causal LM words the reason (`llmrec.index.llm.load_llm`: a Hugging Face folder or a GGUF file;
    default SmolLM2-135M-Instruct), checked before it is used.

    The prompt holds the facts only: the user's recent items, the recommended item, the items the attribution
    names (`Reason.causes`) and the text request, if any. The reply is opened with those facts ("Since you bought
    A and B, X") and the model completes the sentence (greedy, no 3-gram repeated, stopped at the end of its
    first sentence, at most `max_new_tokens`): a 135M model asked to write freely wanders off its prompt; opened
    this way its words are about the recommended item and start from the measured reason. With `opening=False`
    it writes the whole sentence itself. `check_rationale` then looks for item titles in the text (catalogue
    titles given as `catalogue`, plus the reason's own items); a title the attribution does not support, or an
    empty text, and the template's sentence is used instead, with the reason recorded (`write`).
    """

    def __init__(
        self,
        source: str | Path | None = None,
        *,
        catalogue: dict[str, str | None] | None = None,
        max_new_tokens: int = 24,
        n_recent: int = 3,
        opening: bool = True,
        fallback: TextGenerator | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        from llmrec.index.llm import load_llm

        self.llm = load_llm(source, cache_dir=cache_dir)
        self.matcher = TitleMatcher(catalogue)
        self.max_new_tokens = max_new_tokens
        self.n_recent = n_recent
        self.opening = opening
        self.fallback = fallback or TemplateGenerator()

    @property
    def name(self) -> str:
        return self.llm.name

    def messages(self, reason: Reason) -> tuple[list[dict[str, str]], str]:
        """The chat messages (facts only) and the opening of the reply."""
        p = _phrases(reason.domain)
        item = short_name(reason.item.name)
        causes = [short_name(c.name) for c in reason.causes if c.item_id != reason.item.item_id]
        recent = [short_name(h.name) for h in reason.history[-self.n_recent :]]
        lines = []
        if recent:
            lines.append(f"The customer recently {p.past}: {'; '.join(recent)}.")
        if reason.query:
            lines.append(f'The customer asked for: "{reason.query}".')
        lines.append(f"We recommend the {p.noun}: {item}.")
        if causes and not reason.weak:
            lines.append(f"The recommendation rests on: {_join(causes)}.")
            opening = f"Since you {p.past} {_join(causes)}, {item}"
        else:
            lines.append(f"No single past {p.noun} explains it.")
            opening = f"No single {p.noun} you {p.past} explains it on its own, but {item}"
        lines.append(f"Say in one sentence why {item} suits the customer.")
        system = "You are a shop assistant. Answer in one short sentence, using only the facts given."
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}], (
            opening if self.opening else ""
        )

    def write(self, reason: Reason) -> Rationale:
        messages, opening = self.messages(reason)
        reply = self.llm.chat(
            messages, max_new_tokens=self.max_new_tokens, reply_start=opening, no_repeat_ngram_size=3, stop=(".", "!", "?", "\n")
        )
        joined = opening + ("" if not reply or reply[0] in ",.;:!?'" else " ") + reply if opening else reply
        text = _first_sentences(joined, 3)
        problem = check_rationale(text, reason, self.matcher)
        if problem is None and opening and len(_words(reply)) < 2:
            problem = "the model added nothing to the opening"
        if problem is not None:
            return Rationale(self.fallback.generate(reason), "template", problem)
        return Rationale(text, "llm")

    def generate(self, reason: Reason) -> str:
        return self.write(reason).text


def _first_sentences(text: str, n: int) -> str:
    """At most `n` sentences of `text`, on one line; an unfinished last sentence loses its dangling words
    ("... with a luxurious and") and ends with a full stop."""
    text = " ".join(text.split())
    parts = re.split(r"(?<=[.!?])\s+", text)
    out = " ".join(parts[:n]).strip()
    if not out or out.endswith((".", "!", "?")):
        return out
    words = out.rstrip(",;: ").split()
    while len(words) > 1 and words[-1].lower().strip(",;:") in _DANGLING:
        words.pop()
    return " ".join(words).rstrip(",;: ") + "."


def write_reason(generator: TextGenerator, reason: Reason) -> Rationale:
    """The generator's text as a `Rationale` (a generator without `write` is the template's or one of yours)."""
    write = getattr(generator, "write", None)
    if callable(write):
        result = write(reason)
        if isinstance(result, Rationale):
            return result
    written_by = "template" if isinstance(generator, TemplateGenerator) else "custom"
    return Rationale(generator.generate(reason), written_by)


def load_text_generator(
    path: str | Path | None = None, *, llm: bool = False, catalogue: dict[str, str | None] | None = None
) -> TextGenerator:
    """The template generator; with `llm` or a `path` (a local causal-LM folder or GGUF file), an
    `LLMTextGenerator` (default model: the packaged SmolLM2) checked against `catalogue`, the template as fallback."""
    if path is None and not llm:
        return TemplateGenerator()
    return LLMTextGenerator(path, catalogue=catalogue)
