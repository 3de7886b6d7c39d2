"""DynamicViT (Rao et al., NeurIPS 2021): a learned keep predictor before
chosen blocks prunes image tokens (DESIGN 4.4).

Training samples hard Gumbel keep decisions, multiplied through the stages
and applied as a differentiable attention mask (every token stays), and adds
the keep-ratio loss; inference keeps a static top-k of the predictor's keep
scores, the image CLS token always. Text tokens are never pruned.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from pumer_jax.reduce.config import ReduceConfig, register
from pumer_jax.reduce.counts import LayerCounts, check_layers, layer_tuple
from pumer_jax.reduce.keep import (
    gumbel_hard_keep,
    keep_predictor,
    keep_predictor_spec,
    keep_ratio_loss,
)
from pumer_jax.reduce.protocol import Geometry, Needs, Where
from pumer_jax.reduce.prune import topk_index

# The rho `search` costs (no accuracy off the shelf: the predictors must
# be trained); stage s keeps rho ** (s + 1), as the reference's 0.7, 0.49,
# 0.343.
SEARCH_RHOS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


@register
@dataclasses.dataclass(frozen=True)
class DynamicVit(ReduceConfig):
  """DynamicViT's settings (config key `reduce`, `method="dynamicvit"`).

  Attributes:
    layers: 0-based layers (ViLT) or fusion blocks (METER) before which
      the image tokens are pruned (the reference's `pruning_loc`).
    keep_ratios: rho per stage: the fraction of the original non-CLS image
      tokens kept after each stage (non-increasing).
    gumbel_temperature: the Gumbel-softmax temperature in training.
    ratio_weight: the weight of the keep-ratio loss (the reference's 2).
  """

  method: ClassVar[str] = "dynamicvit"
  label: ClassVar[str] = "DynamicViT"
  where: ClassVar[Where] = Where.BEFORE_BLOCK
  param_name: ClassVar[str] = "keep_predictor"

  layers: tuple[int, ...] = ()
  keep_ratios: tuple[float, ...] = ()
  gumbel_temperature: float = 1.0
  ratio_weight: float = 2.0

  def __post_init__(self):
    object.__setattr__(self, "layers", layer_tuple(self.layers))
    object.__setattr__(self, "keep_ratios", tuple(self.keep_ratios))
    if len(self.keep_ratios) != len(self.layers):
      raise ValueError(
          f"reduce.keep_ratios={self.keep_ratios} must give one ratio per "
          f"reduce layer {self.layers}.")
    previous = 1.0
    for rho in self.keep_ratios:
      if not isinstance(rho, (int, float)) or not 0.0 < rho <= previous:
        raise ValueError(
            f"reduce.keep_ratios={self.keep_ratios}: each ratio must be in "
            "(0, 1] and no larger than the one before (the fraction of the "
            "original image tokens kept after each stage).")
      previous = rho
    if not self.gumbel_temperature > 0:
      raise ValueError(f"reduce.gumbel_temperature="
                       f"{self.gumbel_temperature!r} must be positive.")

  def plan(self, geometry: Geometry, train: bool) -> tuple[LayerCounts, ...]:
    layers = check_layers(self.layers, geometry.depth)
    steps, image, text = [], geometry.image_len, geometry.text_len
    for layer, rho in zip(layers, self.keep_ratios):
      # The reference's int(N * rho) of the N original patch tokens, rho
      # cumulative, plus the image CLS token.
      patches = int(rho * (geometry.image_len - 1))
      if patches < 1:
        raise ValueError(
            f"reduce.keep_ratios={self.keep_ratios}: rho={rho} keeps "
            f"int({rho} * {geometry.image_len - 1}) = 0 image patches; "
            "raise it.")
      # Training masks instead of dropping: every token stays.
      keep = image if train else patches + 1
      steps.append(LayerCounts(layer=layer, tokens_in=image + text,
                               image_in=image, text_in=text,
                               prune=image - keep))
      image = keep
    return tuple(steps)

  def needs(self) -> Needs:
    return Needs(rng=True)

  def param_spec(self, hidden_size: int):
    return keep_predictor_spec(hidden_size)

  def param_stages(self) -> int:
    return len(self.layers)

  def reduce_streams(self, counts, text, image, view, ctx):
    del view
    patches = image.x[:, 1:]  # the image CLS token is never pruned
    if ctx.train:
      policy = image.policy
      if policy is None:
        policy = jnp.ones(image.size.shape, jnp.float32)
      log_probs = keep_predictor(ctx.params, patches, policy[:, 1:])
      keep = gumbel_hard_keep(ctx.rng, log_probs, self.gumbel_temperature)
      patch_policy = policy[:, 1:] * keep  # a dropped token stays dropped
      policy = jnp.concatenate([policy[:, :1], patch_policy], axis=1)
      return text, image._replace(policy=policy), patch_policy.mean(axis=-1)
    if not counts.prune:
      return text, image, None
    log_probs = keep_predictor(ctx.params, patches,
                               jnp.ones(patches.shape[:2], jnp.float32))
    scores = jnp.pad(log_probs[..., 0], ((0, 0), (1, 0)))  # [B, Li]
    index = topk_index(image.size, scores, counts.keep, protect_first=True)
    return text, image.take(index), None

  def loss_terms(self, aux):
    """The reference's ratio loss over the stages' kept fractions."""
    return {"ratio_loss": (self.ratio_weight,
                           keep_ratio_loss(aux, self.keep_ratios))}

  @classmethod
  def search_space(cls, geometry, image_hw):
    del image_hw
    layers = search_layers(geometry.depth)
    return [cls(layers=layers,
                keep_ratios=tuple(rho ** (s + 1) for s in range(len(layers))))
            for rho in SEARCH_RHOS]

  def describe(self) -> str:
    keep = ",".join(f"{k:g}" for k in self.keep_ratios)
    layers = ",".join(str(l) for l in self.layers)
    return f"dynamicvit k{keep} L{layers}"


def search_layers(depth: int) -> tuple[int, ...]:
  """Where `search` places the stages: the reference's quarters of the
  depth (3, 6, 9 of 12), or layers 1 and 2 of a shallow model; never before
  the first block, whose input the predictor has not seen transformed."""
  if depth <= 4:
    return tuple(range(1, min(depth, 3)))
  return tuple(sorted({depth // 4, depth // 2, 3 * depth // 4}))
