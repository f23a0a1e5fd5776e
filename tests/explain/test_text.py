"""Recommendation text: exact template sentences per domain, nothing beyond the metadata, and the LLM
generator's plumbing with a tiny GPT-2 built here (no download)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmrec.explain.text import (
    DOMAIN_PHRASES,
    ItemInfo,
    LLMTextGenerator,
    Reason,
    TemplateGenerator,
    load_text_generator,
    shared_categories,
)

ALIEN = ItemInfo("183", "Alien (1979)", ("Action", "Horror", "Sci-Fi", "Thriller"))
ALIENS = ItemInfo("176", "Aliens (1986)", ("Action", "Sci-Fi", "Thriller", "War"))
TERMINATOR = ItemInfo("195", "Terminator, The (1984)", ("Action", "Sci-Fi", "Thriller"))
FARGO = ItemInfo("100", "Fargo (1996)", ("Crime", "Drama", "Thriller"))


def test_template_sentences_for_movies() -> None:
    gen = TemplateGenerator()
    assert gen.generate(Reason(TERMINATOR, (ALIEN, ALIENS), "movies")) == (
        "Because you watched Alien (1979) and Aliens (1986): the model's score for Terminator, The (1984) depends "
        "most on these Action/Sci-Fi films in your history."
    )
    assert gen.generate(Reason(TERMINATOR, (FARGO,), "movies")) == (
        "Because you watched Fargo (1996): the model's score for Terminator, The (1984) depends most on this "
        "Thriller film in your history."
    )
    assert gen.generate(Reason(TERMINATOR, (), "movies")) == (
        "Recommended to you: Terminator, The (1984) (no single item in your history stands out in the model's score for it)."
    )


def test_template_states_what_was_measured_never_an_unmeasured_statistic() -> None:
    text = TemplateGenerator().generate(Reason(TERMINATOR, (ALIEN, ALIENS), "movies"))
    assert "model's score" in text
    assert not re.search(r"\b(often|usually|viewers|people who)\b", text)


def test_template_never_cites_the_item_it_explains() -> None:
    gen = TemplateGenerator()
    text = gen.generate(Reason(TERMINATOR, (TERMINATOR, FARGO), "movies"))
    assert text.count("Terminator") == 1 and text.startswith("Because you watched Fargo (1996): ")
    alone = gen.generate(Reason(TERMINATOR, (TERMINATOR,), "movies"))
    assert alone.startswith("Recommended to you: ") and alone.count("Terminator") == 1


def test_template_says_when_a_query_shaped_the_list() -> None:
    gen = TemplateGenerator()
    with_query = gen.generate(Reason(TERMINATOR, (ALIEN,), "movies", query="robots from the future"))
    assert with_query.endswith(' Your request "robots from the future" also shaped this list.')
    assert "request" not in gen.generate(Reason(TERMINATOR, (ALIEN,), "movies"))
    assert "robots" in gen.generate(Reason(TERMINATOR, (), "movies", query="robots"))


@pytest.mark.parametrize(
    ("domain", "start", "middle"),
    [
        ("ecommerce", "Because you bought", "depends most on these products in your history"),
        ("music", "Because you listened to", "depends most on these titles in your history"),
        ("news", "Because you read", "depends most on these articles in your history"),
        ("generic", "Because you chose", "depends most on these items in your history"),
        ("unknown-domain", "Because you chose", "depends most on these items in your history"),
    ],
)
def test_template_verbs_follow_the_domain(domain: str, start: str, middle: str) -> None:
    a, b, x = ItemInfo("1", "A"), ItemInfo("2", "B"), ItemInfo("3", None)
    text = TemplateGenerator().generate(Reason(x, (a, b), domain))
    assert text.startswith(f"{start} A and B: ") and middle in text
    assert "score for item 3 " in text  # no title in the catalogue: the raw id, never an invented name


def test_template_names_only_categories_every_cited_item_has() -> None:
    assert shared_categories(Reason(TERMINATOR, (ALIEN, ALIENS, FARGO))) == ["Thriller"]
    assert shared_categories(Reason(TERMINATOR, (ALIEN, ALIENS))) == ["Action", "Sci-Fi"]  # at most 2, item order
    unlike = Reason(ItemInfo("9", "Toy Story (1995)", ("Animation", "Comedy")), (ALIEN, FARGO), "movies")
    text = TemplateGenerator().generate(unlike)
    # every capitalised word is from the template or from a title in the metadata
    allowed = {"Because", "Toy", "Story", "Alien", "Fargo"}
    assert set(re.findall(r"\b[A-Z][\w-]*", text)) <= allowed, text
    assert "these films" in text


def test_every_domain_has_phrases() -> None:
    from llmrec.data.readers import DOMAINS

    assert set(DOMAINS) <= set(DOMAIN_PHRASES)


def test_text_module_does_not_import_torch() -> None:
    code = "import sys, llmrec.explain.text; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---- an LLM from any local causal-LM folder ------------------------------------------------------------------------------
WORDS = ["<pad>", "<bos>", "<eos>", "<unk>", "because", "you", "watched", "alien", "terminator", "often", "next", "."]


@pytest.fixture
def tiny_gpt2(tmp_path: Path) -> Path:
    """A 1-layer GPT-2 with a 12-word vocabulary, saved as a local folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    # transformers 5.x: GPT2Config defaults bos/eos to 50256, outside this vocabulary
    config = GPT2Config(
        vocab_size=len(WORDS), n_positions=128, n_embd=16, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=2, pad_token_id=0
    )
    path = tmp_path / "gpt2"
    GPT2LMHeadModel(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def test_llm_generator_reads_a_local_gpt2_folder_without_a_chat_template(tiny_gpt2: Path) -> None:
    reason = Reason(TERMINATOR, (ALIEN,), "movies", history=(FARGO, ALIEN))
    gen = LLMTextGenerator(tiny_gpt2, max_new_tokens=6, opening=False)
    messages, opening = gen.messages(reason)
    prompt = messages[-1]["content"]
    assert "The customer recently watched: Fargo (1996); Alien (1979)." in prompt
    assert "We recommend the film: Terminator, The (1984)." in prompt
    assert "The recommendation rests on: Alien (1979)." in prompt
    assert "asked for" not in prompt and opening == ""
    robots = gen.messages(Reason(TERMINATOR, (ALIEN,), "movies", query="robots"))[0][-1]["content"]
    assert 'The customer asked for: "robots".' in robots

    reply = gen.llm.chat(messages, max_new_tokens=6)
    assert reply and set(reply.split()) <= set(WORDS[3:])  # decoded from the tiny vocabulary, special tokens dropped
    assert gen.llm.chat(messages, max_new_tokens=6) == reply  # greedy: deterministic
    # the tiny model cannot spell "Terminator, The (1984)": its text is replaced by the template's, and says why
    written = gen.write(reason)
    assert written.text == TemplateGenerator().generate(reason) and written.written_by == "template"
    assert written.fallback in ("the text is empty", "the text does not name the recommended item")
    assert isinstance(load_text_generator(tiny_gpt2), LLMTextGenerator)


def test_load_text_generator_defaults_and_errors(tmp_path: Path) -> None:
    assert isinstance(load_text_generator(None), TemplateGenerator)
    with pytest.raises(FileNotFoundError, match="not a causal-LM folder"):
        load_text_generator(tmp_path / "missing")
