"""Token reduction as pure jnp functions: no parameters, no Flax."""

from pumer_jax.reduce.config import ReduceConfig
from pumer_jax.reduce.keep import gumbel_hard_keep
from pumer_jax.reduce.keep import keep_ratio_loss
from pumer_jax.reduce.keep import policy_weighted_mean
from pumer_jax.reduce.merge import bipartite_merge
from pumer_jax.reduce.merge import init_source
from pumer_jax.reduce.merge import merge_cap
from pumer_jax.reduce.prune import text_image_scores
from pumer_jax.reduce.prune import text_informed_prune
from pumer_jax.reduce.prune import topk_keep
from pumer_jax.reduce.schedule import LayerCounts
from pumer_jax.reduce.schedule import ReductionSchedule

__all__ = [
    "LayerCounts",
    "ReduceConfig",
    "ReductionSchedule",
    "bipartite_merge",
    "gumbel_hard_keep",
    "init_source",
    "keep_ratio_loss",
    "merge_cap",
    "policy_weighted_mean",
    "text_image_scores",
    "text_informed_prune",
    "topk_keep",
]
