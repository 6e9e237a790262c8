"""Kept so that ``from a2gen_hf.serving import A2GenRanker`` keeps working: the ranker lives in
:mod:`a2gen_hf.ranking`, which composes the model's own parts. New code should import from there (or from
``a2gen_hf``)."""

from .ranking import USER_INPUT_NAMES, A2GenRanker, A2GenRankingProgram, UserState

__all__ = ["USER_INPUT_NAMES", "A2GenRanker", "A2GenRankingProgram", "UserState"]
