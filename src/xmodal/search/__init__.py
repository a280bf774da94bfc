"""Search over encoded collections: two-stage retrieval (global shortlist, pairwise rerank)."""

from xmodal.search.two_stage import (
    TwoStageResult,
    cosine_scores,
    rerank,
    score_pairs,
    two_stage_scores,
    two_stage_search,
)

__all__ = ["TwoStageResult", "cosine_scores", "rerank", "score_pairs", "two_stage_scores",
           "two_stage_search"]
