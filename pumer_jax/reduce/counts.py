"""`LayerCounts`, one reduction layer's token counts, and the checks every
method's plan shares (ratios, layer indices).

Each method computes its own counts (`reduce/methods/`), as Python ints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class LayerCounts:
  """Token counts of one reduction layer.

  For modality-aware reductions `image_in`/`text_in` are the image tokens
  (CLS included) and padded text tokens entering the layer; `prune` image
  tokens are dropped (`keep` stay), `fuse` more are added (EViT's fused
  token), then `merge_image` image and `merge_text` text tokens are merged
  away. For a modality-blind reduction of a mixed stream (ToMe in ViLT)
  only `tokens_in` and `merge` apply and the image/text fields are None.
  """

  layer: int
  tokens_in: int
  image_in: int | None = None
  text_in: int | None = None
  prune: int = 0
  merge_image: int = 0
  merge_text: int = 0
  merge: int = 0
  fuse: int = 0

  @property
  def keep(self) -> int | None:
    return None if self.image_in is None else self.image_in - self.prune

  @property
  def image_out(self) -> int | None:
    if self.image_in is None:
      return None
    return self.keep + self.fuse - self.merge_image

  @property
  def text_out(self) -> int | None:
    return None if self.text_in is None else self.text_in - self.merge_text

  @property
  def tokens_out(self) -> int:
    removed = self.prune + self.merge_image + self.merge_text + self.merge
    return self.tokens_in - removed + self.fuse


def check_ratio(name: str, value: float) -> float:
  if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
    raise ValueError(f"reduce.{name}={value!r} must be in [0, 1).")
  return float(value)


def layer_tuple(layers: Sequence[int]) -> tuple[int, ...]:
  """`reduce.layers` checked without the model: distinct ints >= 0, sorted."""
  layers = tuple(layers)
  for layer in layers:
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
      raise ValueError(
          f"reduce.layers={layers}: layer {layer!r} is not a 0-based layer "
          "index (an int >= 0).")
  if len(set(layers)) != len(layers):
    raise ValueError(f"reduce.layers={layers} has duplicate layers.")
  return tuple(sorted(layers))


def check_layers(layers: Sequence[int], depth: int) -> tuple[int, ...]:
  """`reduce.layers` checked against a model of `depth` layers."""
  layers = layer_tuple(layers)
  for layer in layers:
    if layer >= depth:
      raise ValueError(
          f"reduce.layers={layers}: layer {layer!r} is outside [0, {depth}) "
          f"for a model of depth {depth} (layers are 0-based)."
      )
  return layers


def check_layers_given(layers: tuple[int, ...], **ratios: float) -> None:
  """A method's ratios are set, but no layer to apply them: an error."""
  if not layers and any(ratios.values()):
    raise ValueError(
        f"reduce.layers is empty but {sorted(k for k, v in ratios.items() if v)}"
        " are set; name the layers that reduce, e.g. reduce.layers=(2, 5, 8).")


def layer_runs(depth: int) -> list[tuple[int, ...]]:
  """Every run of consecutive layers that leaves the last layer unreduced:
  the layer sets the search spaces cross with their ratios."""
  return [tuple(range(a, b)) for a in range(depth - 1)
          for b in range(a + 1, depth)]
