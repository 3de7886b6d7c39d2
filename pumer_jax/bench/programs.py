"""The programs under test: random weights, random inputs, compiled forwards.

Throughput needs no trained weights, so parameters are drawn at their
initialisers' scale, shared by every method whose parameter tree matches
(`ParamStore`); inputs are random token ids (real-length text, padded) and
pixels; each method's forward pass is jit-compiled once per batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from pumer_jax.bench.presets import ModelConfig
from pumer_jax.models import ARCHITECTURES, ReduceConfig, architecture_of
from pumer_jax.models.layers import INIT_STD

def _example_inputs(batch: int, text_len: int, hw: tuple[int, int],
                    vocab_size: int, seed: int) -> tuple[jax.Array, ...]:
  """Random (input_ids, attention_mask, NHWC pixels); text half to fully
  padded-out, so PuMer scores real text rows as it would on real data."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(max(1, text_len // 2), text_len + 1, size=batch)
  mask = (np.arange(text_len)[None] < lengths[:, None]).astype(np.int32)
  ids = rng.integers(1, vocab_size, (batch, text_len)).astype(np.int32)
  pixels = rng.normal(size=(batch, *hw, 3)).astype(np.float32)
  return tuple(jax.device_put(a) for a in (ids, mask, pixels))


def _cast_floats(params: Any, dtype: str) -> Any:
  """Inference weights in the compute dtype (bfloat16 halves their bytes)."""
  if dtype == "float32":
    return params
  target = jnp.dtype(dtype)
  return jax.tree.map(
      lambda a: a.astype(target) if jnp.issubdtype(a.dtype, jnp.floating)
      else a, params)


def abstract_params(model: ModelConfig, reduce: ReduceConfig, text_len: int,
                    hw: tuple[int, int]) -> dict[str, Any]:
  """The parameter tree of `model` with `reduce`, as ShapeDtypeStructs.

  A trace, no compilation: compiling ViLT-B's init costs more than timing a
  small model. A reducer with parameters of its own adds them
  (`{vilt,meter}/{param_name}_{stage}`: DynamicViT's keep predictors).
  """
  module = ARCHITECTURES[architecture_of(model)].module
  vilt = module(model.replace(reduce=reduce, dtype="float32"))
  spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype)
  abstract = jax.eval_shape(
      vilt.init, jax.random.PRNGKey(0),
      input_ids=spec((1, text_len), jnp.int32),
      attention_mask=spec((1, text_len), jnp.int32),
      pixel_values=spec((1, *hw, 3), jnp.float32))
  return flax.linen.meta.unbox(abstract)["params"]


def fill_random(abstract: Any, seed: int) -> Any:
  """Random values for an abstract tree: LayerNorm scales 1, biases 0, the
  rest N(0, 0.02) as the model's init. Throughput does not depend on them."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf: jax.ShapeDtypeStruct) -> jax.Array:
    name = getattr(path[-1], "key", "")
    if name == "scale":
      value = np.ones(leaf.shape, np.float32)
    elif name == "bias":
      value = np.zeros(leaf.shape, np.float32)
    else:
      value = rng.standard_normal(leaf.shape, np.float32) * INIT_STD
    return jax.device_put(value.astype(leaf.dtype))

  return jax.tree_util.tree_map_with_path(fill, abstract)


class ParamStore:
  """The shared unreduced weights, plus each reducer's own parameters.

  One copy of the backbone on the device for every method, so memory
  measurements compare activations, not duplicated weights.
  """

  def __init__(self, model: ModelConfig, text_len: int,
               image_size: tuple[int, int], seed: int):
    self._model, self._text_len = model, text_len
    self._image_size, self._seed = image_size, seed
    base = abstract_params(model, ReduceConfig(), text_len, image_size)
    self._base = _cast_floats(fill_random(base, seed), model.dtype)
    self._extra: dict[ReduceConfig, dict[str, Any]] = {}

  def get(self, reduce: ReduceConfig) -> dict[str, Any]:
    """The parameters the model with this reducer expects."""
    if not reduce.param_stages():
      return self._base
    backbone = architecture_of(self._model)  # "vilt" or "meter"
    if reduce not in self._extra:
      full = abstract_params(self._model, reduce, self._text_len,
                             self._image_size)
      predictors = {k: v for k, v in full[backbone].items()
                    if k.startswith(reduce.param_name + "_")}
      self._extra[reduce] = _cast_floats(
          fill_random(predictors, self._seed + 1), self._model.dtype)
    return {**self._base,
            backbone: {**self._base[backbone], **self._extra[reduce]}}


def head_output(out: dict[str, Any]) -> jax.Array:
  """What a benchmarked forward returns: the head's logits, or the pooled
  features of a model without a head."""
  return out["logits"] if "logits" in out else out["pooled"]


def compile_forward(model: ModelConfig, reduce: ReduceConfig, params: Any,
                    inputs: Sequence[jax.Array | jax.ShapeDtypeStruct], *,
                    debug_checks: bool = False):
  """AOT-compiles the inference forward pass for the inputs' exact shapes
  (input_ids, attention_mask, NHWC pixel_values; arrays or shape specs).

  With `debug_checks` the input-value checks are compiled in and the
  program returns `(checkify error, output)`.
  """
  vilt = ARCHITECTURES[architecture_of(model)].module(
      model.replace(reduce=reduce))

  def forward(params, input_ids, attention_mask, pixel_values):
    out = vilt.apply({"params": params}, input_ids=input_ids,
                     attention_mask=attention_mask,
                     pixel_values=pixel_values, train=False,
                     debug_checks=debug_checks)
    return head_output(out)

  if debug_checks:
    forward = checkify.checkify(forward, errors=checkify.user_checks)
  return jax.jit(forward).lower(params, *inputs).compile()


def device_peak_bytes(device: jax.Device) -> int | None:
  """The device allocator's high-water mark, or None (CPU has no stats)."""
  stats = getattr(device, "memory_stats", lambda: None)()
  if not stats or "peak_bytes_in_use" not in stats:
    return None
  return int(stats["peak_bytes_in_use"])


def is_out_of_memory(err: BaseException) -> bool:
  """XLA's RESOURCE_EXHAUSTED (compile or run time), or host MemoryError."""
  return isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in str(err)