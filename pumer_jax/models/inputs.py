"""Input checks shared by the models, run at trace time.

Both configs (`ViltConfig`, `MeterConfig`) name these fields alike: `head`,
`num_images`, `num_channels`, `input_size`, `patch_size`, `max_text_len`.
A wrong shape is an error that names the fix, never a silent recompile.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

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


def resize_images(pixel_values, size, patch_size: int):
  """SmRes: the same model at a smaller input resolution."""
  if size is None:
    raise ValueError("reduce.method='smres' needs reduce.smres_size=(H, W).")
  h, w = size
  if h % patch_size or w % patch_size:
    raise ValueError(
        f"reduce.smres_size={tuple(size)} must be a multiple of "
        f"patch_size={patch_size}.")
  shape = pixel_values.shape[:-3] + (h, w, pixel_values.shape[-1])
  return jax.image.resize(pixel_values, shape, "bilinear", antialias=True)


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
                    token_type_ids) -> tuple[int, dict[str, Any]]:
  """Checks a model's inputs and lays them out as its backbone's passes.

  SmRes resizes the images; NLVR2's images fold into the batch
  (`fold_images`). Returns (images per example, the backbone's inputs:
  input_ids, attention_mask, token_type_ids, pixel_values, image_type).
  """
  input_ids, attention_mask, token_type_ids = check_text(
      c, input_ids, attention_mask, token_type_ids)
  pixel_values = check_pixels(c, pixel_values, input_ids.shape[0])
  num_images = c.num_images if c.head == "nlvr2" else 1
  if c.reduce.method == "smres":
    pixel_values = resize_images(pixel_values, c.reduce.smres_size,
                                 c.patch_size)
  pixel_values, input_ids, attention_mask, token_type_ids, image_type = (
      fold_images(num_images, pixel_values, input_ids, attention_mask,
                  token_type_ids))
  return num_images, dict(
      input_ids=input_ids, attention_mask=attention_mask,
      token_type_ids=token_type_ids, pixel_values=pixel_values,
      image_type=image_type)
