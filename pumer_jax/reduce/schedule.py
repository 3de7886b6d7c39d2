"""ReductionSchedule: every token count of a reduced model, as Python ints.

A method's `plan` computes the schedule once from its config and the static
input lengths, before tracing, so each reducer runs with shapes known at
compile time and one compiled program serves every batch. A method that
acts after the attention (PuMer, ToMe, EViT) reduces inside its layers, so
"entering layer l" means the counts that layer's attention sees; one that
acts before the block (DynamicViT) prunes just before its layers, so there
the layer's attention already sees `steps[..].tokens_out`.
"""

from __future__ import annotations

import dataclasses

from pumer_jax.reduce.counts import LayerCounts


@dataclasses.dataclass(frozen=True)
class ReductionSchedule:
  """Static per-layer token counts for one reducer on one input shape.

  Attributes:
    method: the reducer's registered name.
    depth: reducible layers (ViLT's layers, METER's fusion blocks).
    image_len: image tokens entering the first layer (a smaller input
      resolution, SmRes, already counted), CLS included.
    text_len: padded text tokens.
    steps: the counts of every layer that reduces, in layer order.
    before_block: the method acts just before its layers' blocks.
  """

  method: str
  depth: int
  image_len: int
  text_len: int
  steps: tuple[LayerCounts, ...] = ()
  before_block: bool = False

  def at(self, layer: int) -> LayerCounts | None:
    """The counts of `layer` if it reduces tokens, else None."""
    for step in self.steps:
      if step.layer == layer:
        return step
    return None

  @property
  def layers(self) -> tuple[int, ...]:
    return tuple(s.layer for s in self.steps)

  def tokens_in(self, layer: int) -> int:
    """Tokens (image + text) entering `layer`."""
    if not 0 <= layer <= self.depth:
      raise ValueError(f"layer {layer} is outside [0, {self.depth}].")
    total = self.image_len + self.text_len
    for step in self.steps:
      if step.layer < layer:
        total = step.tokens_out
    return total

  def image_text_in(self, layer: int) -> tuple[int, int]:
    """(image, text) tokens entering `layer`, for modality-aware methods."""
    image, text = self.image_len, self.text_len
    for step in self.steps:
      if step.layer < layer:
        if step.image_out is None:
          raise ValueError(f"{self.method} mixes image and text tokens at "
                           f"layer {step.layer}: no image/text split.")
        image, text = step.image_out, step.text_out
    return image, text

  def flops_proxy(self, full_image_len: int | None = None) -> float:
    """Sum over layers of tokens its attention sees, relative to unreduced.

    A quick, token-linear cost proxy; benchmarks use compiled FLOPs instead.
    A method acting before a block makes that block see fewer already.
    `full_image_len`: the unreduced model's image tokens, where this
    schedule starts from fewer (a smaller input resolution).
    """
    full = self.depth * ((full_image_len or self.image_len) + self.text_len)
    seen = (self.tokens_in(l + 1) if self.before_block and self.at(l) else
            self.tokens_in(l) for l in range(self.depth))
    return sum(seen) / full
