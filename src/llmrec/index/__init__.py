"""Item index: item text -> embeddings with a pretrained sentence encoder; embeddings -> semantic ids and their trie;
the item table -> a FAISS index for approximate top-k retrieval (`ann`, faiss imported only when used)."""

from __future__ import annotations

from llmrec.index.ann import ItemIndex
from llmrec.index.semantic_ids import PAD_CODE, CodeTrie, SemanticIds, build_semantic_ids, collision_rate
from llmrec.index.text_encoder import SentenceTransformerEncoder, TextEncoder, encode_items, item_texts

__all__ = [
    "PAD_CODE",
    "CodeTrie",
    "ItemIndex",
    "SemanticIds",
    "SentenceTransformerEncoder",
    "TextEncoder",
    "build_semantic_ids",
    "collision_rate",
    "encode_items",
    "item_texts",
]
