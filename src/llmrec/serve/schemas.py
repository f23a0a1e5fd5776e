"""Request and response bodies of the HTTP service (pydantic; no torch), and so its OpenAPI document.

Limits live here, next to the fields they bound, so that the OpenAPI document states them and a client (or a
fuzzer) can read them: ``k`` in [1, 1000], ids up to 256 characters, a history up to 10,000 ids (the model reads
only its ``max_seq_len`` most recent ones; the answer says when it cut), a batch up to 256 requests.

Options beyond the plain next-item ranking: ``explain`` (the history items behind each recommendation, and a
sentence), ``diversity`` (maximal-marginal-relevance re-ranking), ``query`` (a text intent blended into the scores)
and ``adapt`` (few-shot adaptation, for artifacts with a meta-trained adapter). An option that the loaded artifact
cannot serve is answered 422 ``not_available``, with the reason.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

__all__ = [
    "MAX_BATCH_REQUESTS",
    "MAX_EXPLAIN_K",
    "MAX_HISTORY",
    "MAX_ID_CHARS",
    "MAX_K",
    "BatchRecommendRequest",
    "BatchRecommendResponse",
    "Contribution",
    "ErrorResponse",
    "FieldError",
    "HealthResponse",
    "ItemExplanation",
    "ItemInfo",
    "ItemList",
    "ReadyResponse",
    "RecommendRequest",
    "RecommendResponse",
    "RecommendedItem",
    "ServiceInfo",
    "UserHistory",
]

MAX_K = 1000
MAX_ID_CHARS = 256
MAX_HISTORY = 10_000
MAX_BATCH_REQUESTS = 256
MAX_EXPLAIN_K = 100  # default limit of k with explain (one scoring pass per history item); see llmrec.serve.limits
MAX_LLM_TEXT_K = 5  # k of a request with llm_text: each reason is ~1-2 s of LLM decoding on a CPU
MAX_EXPLAINED_PER_CALL = 16  # default limit of requests of one batch call that ask for `explain`

RawId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
MAX_INT_ID = 2**53 - 1  # an integer user_id (its decimal text is the id): the integers every JSON reader keeps exact
# user_id as the server reads it: text, an integer (read as its text), or null (absent)
_USER_ID_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
        {"type": "integer", "minimum": -MAX_INT_ID, "maximum": MAX_INT_ID},
        {"type": "null"},
    ]
}


# "Exactly one of user_id or history" in the request schema itself, as the server decides it (null is absent): a
# client generated from the schema, or a fuzzer, then never sends both (or neither) expecting an answer.
_ONE_OF_USER_OR_HISTORY: dict[str, Any] = {
    "oneOf": [
        {"properties": {"user_id": {"type": ["string", "integer"]}}, "required": ["user_id"]},  # not null
        {"properties": {"history": {"type": "array"}}, "required": ["history"]},
    ]
}


class RecommendRequest(BaseModel):
    """Exactly one of ``user_id`` (a user the model was trained on) or ``history`` (raw item ids, oldest first)."""

    # strict: "k": "3" or true is not an integer
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_ONE_OF_USER_OR_HISTORY)

    user_id: Annotated[RawId | None, WithJsonSchema(_USER_ID_SCHEMA)] = Field(
        None, description="A raw user id known to the model (an integer is read as its decimal text)."
    )
    history: list[RawId] | None = Field(
        None,
        max_length=MAX_HISTORY,
        description="Raw item ids, oldest first. Only the most recent max_seq_len are read (see `truncated`). "
        "An empty history gets what `Recommender.recommend(history=[])` gives (no personal signal).",
    )
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return.")
    exclude_seen: bool | None = Field(
        None,
        description="Leave out items already in the history (true) or let them come back (false); default: the model's "
        "rule, chosen on validation when it was trained (`GET /v1/info`: `exclude_seen`).",
    )
    strict: bool = Field(
        False,
        description="Refuse unknown ids (422 unknown_ids). Default: unknown history items are skipped (`ignored_items`) "
        'and an unknown user gets the popular items (`fallback: "popular"`).',
    )
    include_items: list[RawId] | None = Field(None, max_length=MAX_HISTORY, description="Recommend only these item ids.")
    exclude_items: list[RawId] | None = Field(None, max_length=MAX_HISTORY, description="Never recommend these item ids.")
    include_categories: list[RawId] | None = Field(
        None, max_length=MAX_K, description="Recommend only items in at least one of these categories."
    )
    exclude_categories: list[RawId] | None = Field(
        None, max_length=MAX_K, description="Never recommend items in any of these categories."
    )
    include_unavailable: bool = Field(
        False, description="Also recommend items the catalogue marks unavailable (its `available` column)."
    )
    explain: bool = Field(
        False,
        description=f"Explain each item: the history items behind it and a sentence (k <= {MAX_EXPLAIN_K} by default).",
    )
    diversity: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Re-rank for variety: 0 = by score, 1 = most diverse (MMR, λ = 1 − diversity); k <= 100 by default.",
    )
    query: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description='A text intent ("something for summer") blended into the scores; needs the `text` extra.',
    )
    adapt: bool = Field(False, description="Adapt to the history first (cold start); needs an artifact with an adapter.")
    new_items: int = Field(
        0,
        ge=0,
        le=MAX_K,
        description="Keep the last new_items of the k places for the best-scored new items (no event in the model's "
        "stored histories, or held out of training by a cold-item split), when the top k - new_items do not already "
        "hold them; 0 = off, at most k. The business rules apply to them as to any item; they keep their score, so "
        "the list is then not in score order.",
    )
    llm_text: bool = Field(
        False,
        description=f"With explain: the reasons written by the service's LLM (SmolLM2-135M-Instruct by default) and "
        "checked against the attribution (a text naming an unsupported item gets the template's sentence; see "
        f"`written_by` and `fallback`); k <= {MAX_LLM_TEXT_K}, about 1-2 s per item on a CPU. Off unless the "
        "service allows it (`llmrec serve --llm-text`), else 422 not_available.",
    )

    @field_validator("user_id", mode="before")
    @classmethod
    def _integer_user(cls, value: object) -> object:
        """An integer user id (``"user_id": 7``) is read as its string form, "7" (|id| <= 2**53 - 1)."""
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT_ID:
                raise ValueError(f"an integer user_id is at most {MAX_INT_ID} in size; send a larger one as a string")
            return str(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> RecommendRequest:
        if (self.user_id is None) == (self.history is None):
            raise ValueError("give exactly one of user_id or history")
        if self.new_items > self.k:
            raise ValueError(
                f"new_items ({self.new_items}) must be at most k ({self.k}): it is how many of the k places hold new items"
            )
        return self


class Contribution(BaseModel):
    item_id: str = Field(description="A history item (raw id).")
    title: str | None = None
    weight: float = Field(description="How much it raised (> 0) or lowered (< 0) the recommended item's score.")


class ItemExplanation(BaseModel):
    text: str = Field(description="A short reason in words.")
    contributions: list[Contribution] = Field(description="History items with the largest weights, largest first.")
    written_by: str = Field("template", description='Who wrote `text`: "template" or "llm" (with `llm_text`).')
    fallback: str | None = Field(
        None, description="With `llm_text`: why the LLM's text failed the check and the template's is shown instead."
    )


class RecommendedItem(BaseModel):
    item_id: str = Field(description="Raw item id.")
    score: float = Field(description="Model score (blended with the query, if any); higher ranks first.")
    rank: int = Field(ge=1, description="1-based.")
    title: str | None = Field(None, description="Catalogue title, when known.")
    categories: list[str] = Field(default_factory=list, description="Catalogue categories of the item.")
    explanation: ItemExplanation | None = Field(None, description="With `explain`: why this item.")


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    user_id: str | None = Field(None, description="The user asked about, if any.")
    history_length: int = Field(ge=0, description="Items in the history (the user's stored one or the one sent).")
    history_used: int = Field(ge=0, description="Most recent items the model read: min(history_length, max_seq_len).")
    truncated: bool = Field(description="True when the history was longer than the model reads.")
    ignored_items: list[str] = Field(default_factory=list, description="History ids the model does not know, skipped.")
    fallback: str | None = Field(
        None, description='"popular" when there was nothing to go on (an unknown user, no known history item).'
    )
    ignored_categories: list[str] = Field(
        default_factory=list, description="Filter categories no catalogue item has (names match whatever their case)."
    )


class BatchRecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # strict: "k": "3" or true is not an integer

    requests: list[RecommendRequest] = Field(min_length=1, max_length=MAX_BATCH_REQUESTS)


class BatchRecommendResponse(BaseModel):
    results: list[RecommendResponse] = Field(description="One answer per request, in order.")


class ItemInfo(BaseModel):
    item_id: str
    title: str | None = None
    text: str | None = None
    categories: list[str] = Field(default_factory=list)


class ItemList(BaseModel):
    items: list[ItemInfo]


class ServiceInfo(BaseModel):
    dataset: str = Field(description="Name of the dataset the model was trained on.")
    n_items: int
    n_users: int = Field(description="Users whose history the model holds (valid `user_id` values).")
    example_user_ids: list[str] = Field(description="A few of those users, to try the service with.")
    exclude_seen: bool = Field(True, description="The model's seen-item rule: whether history items are left out by default.")
    llm_text: bool = Field(False, description="Whether requests may ask for reasons written by the LLM (`llm_text`).")


class UserHistory(BaseModel):
    user_id: str
    length: int = Field(description="Items in the whole history.")
    items: list[ItemInfo] = Field(description="The most recent `limit` items, most recent first.")


class HealthResponse(BaseModel):
    status: str = Field(description='"ok"')


class ReadyResponse(BaseModel):
    status: str = Field(description='"ready"')
    n_items: int
    max_seq_len: int
    max_batch: int


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every error the service sends has this shape (validation errors included)."""

    code: str = Field(
        description="invalid_request | unknown_ids | not_available | not_found | unauthorized | body_too_large | "
        "unsupported_media_type | body_timeout | timeout | overloaded | model_error | not_ready | http_error | "
        "internal_error"
    )
    message: str
    ids: list[str] = Field(default_factory=list, description="unknown_ids: the ids the model does not know.")
    errors: list[FieldError] = Field(default_factory=list, description="invalid_request: one entry per field.")
