"""Cold-start users: the protocol and episodes (`tasks`), per-user adapters and first-order MAML (`maml`), the LM
as an in-context meta-learner (`in_context`), and meta-training of an artifact end to end (`training`)."""

from llmrec.meta.in_context import EpisodicConfig, episodic_finetune, episodic_windows
from llmrec.meta.maml import (
    AdapterConfig,
    MetaConfig,
    MetaResult,
    UserAdapter,
    adapt,
    adapted_scores,
    has_adapter,
    make_adapted_score_fn,
    meta_train,
)
from llmrec.meta.tasks import (
    SUPPORT_SIZES,
    ColdStartExamples,
    ColdStartResult,
    Episode,
    EpisodeSampler,
    cold_start_examples,
    evaluate_cold_start,
)

__all__ = [
    "SUPPORT_SIZES",
    "AdapterConfig",
    "ColdStartExamples",
    "ColdStartResult",
    "Episode",
    "EpisodeSampler",
    "EpisodicConfig",
    "MetaConfig",
    "MetaResult",
    "UserAdapter",
    "adapt",
    "adapted_scores",
    "cold_start_examples",
    "episodic_finetune",
    "episodic_windows",
    "evaluate_cold_start",
    "has_adapter",
    "make_adapted_score_fn",
    "meta_train",
]
