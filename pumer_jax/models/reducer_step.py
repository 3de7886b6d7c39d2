"""The one reducer step both models call, and what they build for it.

A model asks its `ReduceConfig` where it acts and what it needs, builds the
`AttentionView` of the reduction layer (`single_stream_view` for ViLT's
`[text; image]` self-attention; `text_side_view` / `image_side_view` for
METER's fusion blocks), and calls `Reducer.sequence` or `Reducer.streams`.
The method's own parameters (DynamicViT's keep predictor) are created here
from its declared `Param`s, under `{param_name}_{stage}`. Each step runs
under `jax.named_scope("reducer_{layer}")`, so a profile finds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from pumer_jax.reduce import (
    AttentionView,
    Context,
    LayerCounts,
    Param,
    ReduceConfig,
    ReductionSchedule,
    Tokens,
)
from pumer_jax.reduce.protocol import IMAGE_CLS, Where


class ParamTree(nn.Module):
  """Creates a nested dict of `Param`s as Flax parameters; returns them."""

  spec: Any  # {name: Param | nested dict}

  @nn.compact
  def __call__(self) -> dict[str, Any]:
    out = {}
    for key, value in self.spec.items():
      if isinstance(value, Param):
        init = nn.with_logical_partitioning(value.init, value.axes)
        out[key] = self.param(key, init, value.shape)
      else:
        out[key] = ParamTree(value, name=key)()
    return out


def single_stream_rows(reducer: "Reducer", layer: int, text_len: int
                       ) -> slice | None:
  """The query rows of ViLT's `[text; image]` attention that the reducer
  reads at `layer` (text rows, or the image [CLS] row), or None."""
  if not reducer.needs_probs(layer):
    return None
  if reducer.method.needs().probs == IMAGE_CLS:
    return slice(text_len, text_len + 1)
  return slice(0, text_len)


def single_stream_view(aux: dict[str, Any], text_len: int) -> AttentionView:
  """ViLT: its self-attention over `[text; image]`, text first. Where the
  layer recomputed only some rows (`aux["prob_rows"]`), the view's rows
  index those."""
  keys = aux["keys"]  # [B, N, Dh]
  rows = aux.get("prob_rows")
  first, last = (0, None) if rows is None else (rows.start, rows.stop)
  has = lambda row: last is None or first <= row < last
  return AttentionView(
      keys=keys, text_keys=keys[:, :text_len], image_keys=keys[:, text_len:],
      probs=aux["probs"], dropped=aux["dropped_probs"],
      text_rows=(slice(0 - first, text_len - first)
                 if first == 0 and (last is None or last >= text_len)
                 else None),
      image_cols=slice(text_len, None),
      cls_row=text_len - first if has(text_len) else None)


def text_side_view(self_aux: dict[str, Any], cross_aux: dict[str, Any]
                   ) -> AttentionView:
  """METER's text-side layer: text self-attention keys, and the text ->
  image cross-attention (its keys are the image tokens')."""
  return AttentionView(
      text_keys=self_aux["keys"], image_keys=cross_aux["keys"],
      probs=cross_aux["probs"], dropped=cross_aux["dropped_probs"],
      text_rows=slice(None))


def image_side_view(self_aux: dict[str, Any]) -> AttentionView:
  """METER's image-side layer: its self-attention, the image [CLS] first."""
  return AttentionView(
      keys=self_aux["keys"], image_keys=self_aux["keys"],
      probs=self_aux["probs"], dropped=self_aux["dropped_probs"], cls_row=0)


class Reducer:
  """A model's reducer for one forward pass: the method, its static
  schedule, its parameters, and the auxiliary outputs of its stages.

  Created in a module's `__call__` (`make_rng` and the parameter modules
  belong to that module).
  """

  def __init__(self, method: ReduceConfig, schedule: ReductionSchedule,
               params: list[nn.Module], make_rng: Callable[[], jax.Array],
               train: bool):
    self.method, self.schedule, self.train = method, schedule, train
    self._params, self._make_rng = params, make_rng
    self.aux: list[Any] = []  # one entry per stage that returned one
    self.sources: list[jax.Array] = []  # source map after each stage

  def acts(self, layer: int, where: Where) -> LayerCounts | None:
    """This layer's counts if the method acts here, at `where`."""
    counts = self.schedule.at(layer)
    return counts if counts is not None and self.method.where is where else None

  def needs_probs(self, layer: int) -> bool:
    """Whether the layer must compute attention probabilities for it."""
    return (self.acts(layer, Where.AFTER_ATTENTION) is not None
            and self.method.needs().probs is not None)

  @property
  def reads_image_cls(self) -> bool:
    """The method scores with the image [CLS] row (METER: image side)."""
    return self.method.needs().probs == IMAGE_CLS

  def _context(self, counts: LayerCounts) -> Context:
    stage = self.schedule.layers.index(counts.layer)
    params = self._params[stage]() if self._params else None
    rng = (self._make_rng() if self.train and self.method.needs().rng
           else None)
    return Context(train=self.train, stage=stage, params=params, rng=rng)

  def _record(self, aux: Any, source: jax.Array | None) -> None:
    if aux is not None:
      self.aux.append(aux)
    if source is not None:
      self.sources.append(source)

  def sequence(self, counts: LayerCounts, tokens: Tokens,
               view: AttentionView | None, text_len: int) -> Tokens:
    """One `[text; image]` stream reduced at `counts.layer`."""
    with jax.named_scope(f"reducer_{counts.layer}"):
      out, aux = self.method.reduce_sequence(counts, tokens, view, text_len,
                                             self._context(counts))
    self._record(aux, out.source)
    return out

  def streams(self, counts: LayerCounts, text: Tokens, image: Tokens,
              view: AttentionView | None) -> tuple[Tokens, Tokens]:
    """Separate text and image streams reduced at `counts.layer`."""
    with jax.named_scope(f"reducer_{counts.layer}"):
      text, image, aux = self.method.reduce_streams(counts, text, image, view,
                                                    self._context(counts))
    self._record(aux, image.source)
    return text, image


def reducer_params(method: ReduceConfig, hidden_size: int
                   ) -> list[nn.Module]:
  """The method's per-stage parameter modules (for a model's `setup`)."""
  spec = method.param_spec(hidden_size)
  if spec is None:
    return []
  return [ParamTree(spec, name=f"{method.param_name}_{stage}")
          for stage in range(method.param_stages())]


def check_length(layer: int, got: int, want: int, what: str = "tokens"
                 ) -> None:
  """A layer's output length against the schedule's (a method's bug)."""
  if got != want:
    raise AssertionError(f"layer {layer} produced {got} {what}; the "
                         f"schedule says {want}.")
