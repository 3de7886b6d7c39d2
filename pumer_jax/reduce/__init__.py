"""Token reduction as pure jnp functions: no parameters, no Flax."""

from pumer_jax.reduce.dynamicvit import gumbel_hard_keep
from pumer_jax.reduce.dynamicvit import keep_ratio_loss
from pumer_jax.reduce.dynamicvit import policy_weighted_mean
from pumer_jax.reduce.merge import bipartite_merge
from pumer_jax.reduce.merge import init_source
from pumer_jax.reduce.merge import merge_cap
from pumer_jax.reduce.prune import text_image_scores
from pumer_jax.reduce.prune import text_informed_prune
from pumer_jax.reduce.prune import topk_keep
from pumer_jax.reduce.schedule import LayerCounts
from pumer_jax.reduce.schedule import ReductionSchedule
