"""AdamW with warmup + decay, per-group learning rates, and clipping.

Parameter groups come from the parameter path: the heads
(`classifier`, `rank`, ViLT's `patch_head` and `grounding_head`), the reducer's own parameters (its `param_name`
scopes: DynamicViT's keep predictors), fusion layers (METER), and
everything else. Each group's rate is the base schedule times its
multiplier (`optim.lr_mults`). Weight decay applies to matrices and
embeddings, not to biases or LayerNorm scales.
"""

from __future__ import annotations

from typing import Any

import flax
import optax

GROUPS = ("base", "head", "fusion", "reducer")
# METER's cross-modal parameters (its `cross_modal_*`): fine-tuned at a
# higher learning rate than the pre-trained encoders.
FUSION_PREFIXES = ("text_layer_", "image_layer_", "text_transform",
                   "image_transform", "text_pooler", "image_pooler")


def param_group(path: tuple[str, ...], reducer_scope: str = "") -> str:
  """The optimiser group of a parameter, from its path (`reducer_scope`:
  the reducer's `param_name`, whose stages are `{reducer_scope}_{i}`)."""
  if path[0] in ("classifier", "rank", "patch_head", "grounding_head"):
    return "head"
  if reducer_scope and any(p.startswith(reducer_scope + "_") for p in path):
    return "reducer"
  if path[0] == "meter" and path[1].startswith(FUSION_PREFIXES):
    return "fusion"
  return "base"


def learning_rate_schedule(optim: Any, total_steps: int) -> optax.Schedule:
  """Linear warmup to `optim.lr`, then linear or cosine decay to `end_lr`."""
  warmup = int(optim.warmup_steps)
  if optim.warmup_steps < 0 or warmup >= max(total_steps, 1):
    raise ValueError(
        f"optim.warmup_steps={optim.warmup_steps} must be in "
        f"[0, total_steps={total_steps}).")
  decay_steps = max(total_steps - warmup, 1)
  if optim.decay == "linear":
    decay = optax.linear_schedule(optim.lr, optim.end_lr, decay_steps)
  elif optim.decay == "cosine":
    decay = optax.cosine_decay_schedule(
        optim.lr, decay_steps, alpha=optim.end_lr / optim.lr)
  else:
    raise ValueError(f"optim.decay={optim.decay!r} must be linear or cosine.")
  warm = optax.linear_schedule(0.0, optim.lr, max(warmup, 1))
  return optax.join_schedules([warm, decay], [warmup])


def _decay_mask(params: Any) -> Any:
  flat = flax.traverse_util.flatten_dict(params)
  mask = {k: k[-1] in ("kernel", "embedding") for k in flat}
  return flax.traverse_util.unflatten_dict(mask)


def make_optimizer(optim: Any, total_steps: int, params: Any,
                   reducer_scope: str = "") -> optax.GradientTransformation:
  """The full optimiser for `params` (a tree, abstract or concrete);
  `reducer_scope` names the reducer's own parameters (`param_group`).

  EfficientVLM's gate state is not a parameter: it has its own optimiser
  (`compress.gates.gate_optimizer`) in the train state.
  """
  schedule = learning_rate_schedule(optim, total_steps)
  mults = dict(optim.get("lr_mults", {}) or {})
  unknown = sorted(set(mults) - set(GROUPS))
  if unknown:
    raise ValueError(f"optim.lr_mults has unknown groups {unknown}; "
                     f"valid: {GROUPS}.")

  def group_optimizer(mult: float) -> optax.GradientTransformation:
    return optax.adamw(lambda step: schedule(step) * mult, b1=optim.b1,
                       b2=optim.b2, weight_decay=optim.weight_decay,
                       mask=_decay_mask)

  labels = flax.traverse_util.path_aware_map(
      lambda path, _: param_group(path, reducer_scope), params)
  transforms = {g: group_optimizer(mults.get(g, 1.0)) for g in GROUPS}
  chain = [optax.multi_transform(transforms, labels)]
  if optim.grad_clip:
    chain.insert(0, optax.clip_by_global_norm(optim.grad_clip))
  return optax.chain(*chain)

