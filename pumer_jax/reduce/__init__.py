"""Token reduction as pure jnp functions: no parameters, no Flax.

`ReduceConfig` is the protocol every method implements and `METHODS` its
registry (`config.py`); the built-in methods are `methods/`, one module
each. The math they share: matching and its applications (`assign.py`,
`merge.py`, `official.py`), pruning (`prune.py`), DynamicViT's keep
decisions (`keep.py`).
"""

from pumer_jax.reduce.config import METHODS, ReduceConfig, method_class, register
from pumer_jax.reduce import methods  # registers the built-in methods
from pumer_jax.reduce.assign import Assignment
from pumer_jax.reduce.counts import LayerCounts
from pumer_jax.reduce.keep import gumbel_hard_keep
from pumer_jax.reduce.keep import keep_ratio_loss
from pumer_jax.reduce.keep import policy_weighted_mean
from pumer_jax.reduce.merge import bipartite_matching
from pumer_jax.reduce.merge import bipartite_merge
from pumer_jax.reduce.merge import init_source
from pumer_jax.reduce.merge import merge_cap
from pumer_jax.reduce.protocol import (
    AttentionRule,
    AttentionView,
    Context,
    Geometry,
    Needs,
    Param,
    Where,
)
from pumer_jax.reduce.prune import text_image_scores
from pumer_jax.reduce.prune import text_informed_prune
from pumer_jax.reduce.prune import topk_keep
from pumer_jax.reduce.schedule import ReductionSchedule
from pumer_jax.reduce.tokens import Tokens

__all__ = [
    "METHODS",
    "Assignment",
    "AttentionRule",
    "AttentionView",
    "Context",
    "Geometry",
    "LayerCounts",
    "Needs",
    "Param",
    "ReduceConfig",
    "ReductionSchedule",
    "Tokens",
    "Where",
    "bipartite_matching",
    "bipartite_merge",
    "gumbel_hard_keep",
    "init_source",
    "keep_ratio_loss",
    "merge_cap",
    "method_class",
    "methods",
    "policy_weighted_mean",
    "register",
    "text_image_scores",
    "text_informed_prune",
    "topk_keep",
]
