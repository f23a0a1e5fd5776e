"""Cold-start users: episodes (`tasks`), first-order MAML of the per-user adapter (`maml`; the adapter itself is
`llmrec.models.adapter`), the LM as an in-context meta-learner (`in_context`), and meta-training of an artifact end
to end (`training`). The cold-start evaluation protocol is `llmrec.eval.cold_start`: meta imports eval, never the
reverse."""

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
from llmrec.meta.tasks import Episode, EpisodeSampler

__all__ = [
    "AdapterConfig",
    "Episode",
    "EpisodeSampler",
    "EpisodicConfig",
    "MetaConfig",
    "MetaResult",
    "UserAdapter",
    "adapt",
    "adapted_scores",
    "episodic_finetune",
    "episodic_windows",
    "has_adapter",
    "make_adapted_score_fn",
    "meta_train",
]
