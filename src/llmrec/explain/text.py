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
list (`Reason.query`), the text says so. `HFTextGenerator` words the same facts
with a causal language model loaded from a local folder; a model can still write things that are not in its
prompt, so by default its text is used only when it names the recommended item, otherwise the template is.

No torch here: transformers (and with it torch) is imported only when an `HFTextGenerator` is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "DOMAIN_PHRASES",
    "DomainPhrases",
    "HFTextGenerator",
    "ItemInfo",
    "Reason",
    "TemplateGenerator",
    "TextGenerator",
    "load_text_generator",
    "shared_categories",
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
    weak: bool = False  # the strongest attribution is too weak to name an item (`llmrec.explain.attribution.is_weak`)


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


class HFTextGenerator:
    """A Hugging Face causal LM from a local folder (no download) words the facts; greedy decoding.

    With `require_item_name` (the default), text that does not name the recommended item is replaced by the
    fallback generator's (the template), a cheap guard against a model that wanders off its prompt.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_new_tokens: int = 40,
        require_item_name: bool = True,
        fallback: TextGenerator | None = None,
    ) -> None:
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: not a local model folder")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer: Any = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        self.model: Any = model.eval()
        self.max_new_tokens = max_new_tokens
        self.require_item_name = require_item_name
        self.fallback = fallback or TemplateGenerator()

    @staticmethod
    def prompt(reason: Reason) -> str:
        """The facts, and nothing else, as the model's prompt."""
        p = _phrases(reason.domain)

        def fact(i: ItemInfo) -> str:
            return i.name + (f" ({', '.join(i.categories)})" if i.categories else "")

        lines = [f"Recommended {p.noun}: {fact(reason.item)}."]
        if reason.causes:
            lines.append(f"The user {p.past}: {'; '.join(fact(c) for c in reason.causes)}.")
        if reason.query:
            lines.append(f'The user asked for: "{reason.query}".')
        lines.append(f"In one sentence, using only these facts, explain why the user may like {reason.item.name}:")
        return "\n".join(lines) + "\n"

    def generate(self, reason: Reason) -> str:
        import torch

        enc = self.tokenizer(self.prompt(reason), return_tensors="pt")
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad)
        new = out[0, enc["input_ids"].shape[1] :]
        text = str(self.tokenizer.decode(new, skip_special_tokens=True)).strip()
        text = text.split("\n")[0].strip()
        if not text or (self.require_item_name and reason.item.name not in text):
            return self.fallback.generate(reason)
        return text


def load_text_generator(path: str | Path | None = None) -> TextGenerator:
    """The template generator, or (given a local folder) a Hugging Face causal LM with the template as fallback."""
    return TemplateGenerator() if path is None else HFTextGenerator(path)
