"""Input checks shared by the models: shapes at trace time, values too.

Both configs (`ViltConfig`, `MeterConfig`) name these fields alike: `head`,
`num_images`, `num_channels`, `input_size`, `patch_size`, `max_text_len`,
`vocab_size`. A wrong shape is an error that names the fix, never a silent
recompile. Values (token ids inside the embedding table, finite pixels, the
first text position unmasked) are checked whenever the inputs are concrete,
i.e. outside `jit`; inside `jit` the same checks run through `checkify`
when the caller asks (`debug_checks=True`, which the train, eval and bench
steps pass from `config.debug_checks` and wrap in `checkify.checkify`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids",
                "pixel_values")


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
  """The entries of a data batch that the models take (drops labels etc.)."""
  return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def check_text(c: Any, input_ids, attention_mask, token_type_ids):
  """Validates text shapes at trace time and fills the optional inputs."""
  if input_ids.ndim != 2:
    raise ValueError(
        f"input_ids must be [batch, text_length]; got shape {input_ids.shape}.")
  if not jnp.issubdtype(input_ids.dtype, jnp.integer):
    raise ValueError(
        f"input_ids has dtype {input_ids.dtype}; token ids must be integers "
        "(int32), as a tokenizer returns them.")
  length = input_ids.shape[1]
  if length == 0:
    raise ValueError("input_ids has no tokens; every example needs [CLS].")
  if length > c.max_text_len:
    raise ValueError(
        f"text length {length} exceeds what the position table holds "
        f"({c.max_text_len} tokens); truncate the text to at most "
        f"{c.max_text_len} tokens.")
  if attention_mask is None:
    attention_mask = jnp.ones_like(input_ids)
  if token_type_ids is None:
    token_type_ids = jnp.zeros_like(input_ids)
  for name, a in (("attention_mask", attention_mask),
                  ("token_type_ids", token_type_ids)):
    if a.shape != input_ids.shape:
      raise ValueError(
          f"{name} has shape {a.shape}; it must match input_ids "
          f"{input_ids.shape}.")
  return input_ids, attention_mask, token_type_ids


def check_pixels(c: Any, pixel_values, batch: int):
  """Validates the NHWC image batch against the config at trace time."""
  multi = c.head == "nlvr2"
  want = ("[batch, num_images, H, W, C]" if multi else "[batch, H, W, C]")
  rank = 5 if multi else 4
  if pixel_values.ndim != rank:
    raise ValueError(
        f"pixel_values must be NHWC {want}; got shape {pixel_values.shape}.")
  if pixel_values.shape[0] != batch:
    raise ValueError(
        f"pixel_values batch {pixel_values.shape[0]} != text batch {batch}.")
  if multi and pixel_values.shape[1] != c.num_images:
    raise ValueError(
        f"pixel_values holds {pixel_values.shape[1]} images per example; "
        f"this NLVR2 model takes num_images={c.num_images}.")
  h, w, channels = pixel_values.shape[-3:]
  if channels != c.num_channels:
    raise ValueError(
        f"pixel_values has {channels} channels, expected {c.num_channels} "
        "(images are NHWC, channels last).")
  if c.input_size is not None and (h, w) != tuple(c.input_size):
    raise ValueError(
        f"image size {(h, w)} does not match the config's input_size "
        f"{tuple(c.input_size)}; resize the images or change input_size.")
  if h % c.patch_size or w % c.patch_size or h < c.patch_size:
    raise ValueError(
        f"image size {(h, w)} must be a positive multiple of patch_size="
        f"{c.patch_size}.")
  return pixel_values


def _is_concrete(*arrays) -> bool:
  return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def check_values(c: Any, input_ids, attention_mask, pixel_values, *,
                 debug_checks: bool = False) -> None:
  """Token ids in [0, vocab_size), pixels finite, first text token unmasked.

  On concrete inputs a `ValueError` names the example, the value and the
  fix. On traced inputs (inside `jit`) the checks are `checkify` checks
  when `debug_checks`, else skipped (they would cost a device reduction
  and a host sync per step).
  """
  vocab = c.vocab_size
  fix_ids = ("use the tokenizer the model was trained with: its vocabulary "
             f"must fit the embedding table (vocab_size={vocab})")
  fix_mask = ("the first position holds [CLS]/<s>, which the model pools; "
              "pad at the end and keep attention_mask[:, 0] = 1")
  fix_pixels = "check the image decoding and normalisation"
  if _is_concrete(input_ids, attention_mask, pixel_values):
    ids = np.asarray(input_ids)
    bad = np.argwhere((ids < 0) | (ids >= vocab))
    if bad.size:
      i, j = bad[0]
      raise ValueError(
          f"example {i}: input_ids[{i}, {j}] = {ids[i, j]} is outside "
          f"[0, vocab_size={vocab}); {fix_ids}.")
    first = np.asarray(attention_mask)[:, 0]
    masked = np.flatnonzero(first == 0)
    if masked.size:
      raise ValueError(
          f"example {masked[0]}: attention_mask[{masked[0]}, 0] = 0 masks "
          f"the first text position; {fix_mask}.")
    pixels = np.asarray(pixel_values)
    bad = np.argwhere(~np.isfinite(pixels))
    if bad.size:
      index = tuple(int(k) for k in bad[0])
      raise ValueError(
          f"example {index[0]}: pixel_values{list(index)} = {pixels[index]} "
          f"is not finite; {fix_pixels}.")
    return
  if not debug_checks:
    return
  bad_ids = (input_ids < 0) | (input_ids >= vocab)  # [B, L]
  row = jnp.argmax(bad_ids.any(axis=1))
  checkify.check(~bad_ids.any(),
                 "example {i}: a token id is outside [0, vocab_size="
                 f"{vocab}); {fix_ids}.", i=row)
  checkify.check(jnp.all(attention_mask[:, 0] != 0),
                 "example {i}: attention_mask[:, 0] = 0 masks the first text "
                 f"position; {fix_mask}.",
                 i=jnp.argmin(attention_mask[:, 0] != 0))
  finite = jnp.isfinite(pixel_values).reshape(pixel_values.shape[0], -1)
  checkify.check(jnp.all(finite),
                 "example {i}: pixel_values hold a NaN or inf; "
                 f"{fix_pixels}.", i=jnp.argmin(finite.all(axis=1)))


def image_shape(c: Any, batch: int) -> tuple[int, ...]:
  """The NHWC pixel batch shape a model is compiled for: `input_size`
  (else the position table's `image_size`), two images per NLVR2 example."""
  h, w = c.input_size or (c.image_size, c.image_size)
  images = (batch, c.num_images) if c.head == "nlvr2" else (batch,)
  return images + (h, w, c.num_channels)


def zero_inputs(c: Any, batch: int, text_len: int) -> dict[str, np.ndarray]:
  """Zero inputs with the static shapes a model is compiled for."""
  return dict(
      input_ids=np.zeros((batch, text_len), np.int32),
      attention_mask=np.ones((batch, text_len), np.int32),
      pixel_values=np.zeros(image_shape(c, batch), np.float32),
  )


def fold_images(num_images: int, pixel_values, input_ids, attention_mask,
                token_type_ids):
  """Pairs each of an example's images with its text in a pass of its own.

  NLVR2's [B, I, H, W, C] images become I*B single-image examples (image i
  of every example first, then image i+1), the text tiled to match, image i
  typed i + 1 (text is type 0). One image: unchanged, typed 1.

  Returns (pixel_values, input_ids, attention_mask, token_type_ids,
  image_type [I*B]).
  """
  batch = input_ids.shape[0]
  if num_images == 1:
    return (pixel_values, input_ids, attention_mask, token_type_ids,
            jnp.ones((batch,), jnp.int32))
  pixel_values = jnp.swapaxes(pixel_values, 0, 1).reshape(
      (num_images * batch,) + pixel_values.shape[2:])
  repeat = lambda a: jnp.tile(a, (num_images, 1))
  image_type = jnp.repeat(jnp.arange(1, num_images + 1), batch)
  return (pixel_values, repeat(input_ids), repeat(attention_mask),
          repeat(token_type_ids), image_type)


def unfold_pooled(num_images: int, pooled: jax.Array) -> jax.Array:
  """[I*B, D] pooled features of `fold_images`' passes -> [B, I*D]."""
  if num_images == 1:
    return pooled
  batch = pooled.shape[0] // num_images
  pooled = jnp.swapaxes(pooled.reshape(num_images, batch, -1), 0, 1)
  return pooled.reshape(batch, -1)


def backbone_passes(c: Any, input_ids, pixel_values, attention_mask,
                    token_type_ids, *, debug_checks: bool = False
                    ) -> tuple[int, dict[str, Any]]:
  """Checks a model's inputs and lays them out as its backbone's passes.

  Shapes and values are checked first (`check_values`; `debug_checks` turns
  on its `checkify` checks under `jit`). The reducer prepares the images
  (SmRes resizes them, `prepare_pixels`); NLVR2's
  images fold into the batch (`fold_images`). Returns (images per example, the backbone's inputs:
  input_ids, attention_mask, token_type_ids, pixel_values, image_type).
  """
  input_ids, attention_mask, token_type_ids = check_text(
      c, input_ids, attention_mask, token_type_ids)
  pixel_values = check_pixels(c, pixel_values, input_ids.shape[0])
  check_values(c, input_ids, attention_mask, pixel_values,
               debug_checks=debug_checks)
  num_images = c.num_images if c.head == "nlvr2" else 1
  pixel_values = c.reduce.prepare_pixels(pixel_values, c.patch_size)
  pixel_values, input_ids, attention_mask, token_type_ids, image_type = (
      fold_images(num_images, pixel_values, input_ids, attention_mask,
                  token_type_ids))
  return num_images, dict(
      input_ids=input_ids, attention_mask=attention_mask,
      token_type_ids=token_type_ids, pixel_values=pixel_values,
      image_type=image_type)
