"""METER's encoders from local Hugging Face CLIP and RoBERTa checkpoints.

The fusion blocks and heads start fresh. The row builders here
(`projection_rows`, `bert_rows`, `cross_layer_rows`) also build the
official checkpoints' table (`meter_official.py`).
"""

from __future__ import annotations

import pathlib
from typing import Any

import flax
import jax
import numpy as np

from pumer_jax.convert.mapping import (
    check_convertible,
    drop_layers,
    fit_to_model,
    load_state_dict,
    map_state_dict,
    read_json,
)
from pumer_jax.models import meter as meter_lib

_PROJECTIONS = {"q": "query", "k": "key", "v": "value", "out": "out"}


def projection_rows(src: str, names: tuple[str, ...]
                     ) -> tuple[tuple[str, str, str], ...]:
  """CLIP's `{q,k,v,out}_proj` of vision layer \\1 -> our attention names."""
  rows = []
  for name in names:
    dst = f"meter/vision/layer_\\1/self_attn/{_PROJECTIONS[name]}/"
    rows += [(src + name + r"_proj\.weight", dst + "kernel", "linear"),
             (src + name + r"_proj\.bias", dst + "bias", "copy")]
  return tuple(rows)


_HF_CLIP = r"(?:vision_model\.)?"  # CLIPModel prefixes, CLIPVisionModel may not
_HF_CLIP_L = _HF_CLIP + r"encoder\.layers\.(\d+)\."
METER_VISION = "meter/vision/"
CLIP_VISION_TABLE: tuple[tuple[str, str, str], ...] = (
    (_HF_CLIP + r"embeddings\.patch_embedding\.weight",
     METER_VISION + "patch_embedding/kernel", "conv"),
    (_HF_CLIP + r"embeddings\.class_embedding", METER_VISION + "class_embedding",
     "copy"),
    (_HF_CLIP + r"embeddings\.position_embedding\.weight",
     METER_VISION + "position_embedding", "copy"),
    (_HF_CLIP + r"pre_layrnorm\.weight", METER_VISION + "pre_layernorm/scale", "copy"),
    (_HF_CLIP + r"pre_layrnorm\.bias", METER_VISION + "pre_layernorm/bias", "copy"),
    (_HF_CLIP + r"post_layernorm\.weight", METER_VISION + "post_layernorm/scale",
     "copy"),
    (_HF_CLIP + r"post_layernorm\.bias", METER_VISION + "post_layernorm/bias", "copy"),
    *projection_rows(_HF_CLIP_L + r"self_attn\.", ("q", "k", "v", "out")),
    (_HF_CLIP_L + r"(layer_norm[12])\.weight", METER_VISION + r"layer_\1/\2/scale",
     "copy"),
    (_HF_CLIP_L + r"(layer_norm[12])\.bias", METER_VISION + r"layer_\1/\2/bias", "copy"),
    (_HF_CLIP_L + r"mlp\.(fc[12])\.weight", METER_VISION + r"layer_\1/mlp/\2/kernel",
     "linear"),
    (_HF_CLIP_L + r"mlp\.(fc[12])\.bias", METER_VISION + r"layer_\1/mlp/\2/bias",
     "copy"),
)
# A whole CLIPModel directory also holds the text tower and projections.
CLIP_VISION_UNUSED: tuple[str, ...] = (
    r"text_model\..*", r"visual_projection\.weight",
    r"text_projection\.weight", r"logit_scale", r".*\.position_ids",
)


def bert_rows(src: str, dst: str) -> tuple[tuple[str, str, str], ...]:
  """Rows of one Hugging Face BERT-style encoder (embeddings + layers)."""
  layer = src + r"encoder\.layer\.(\d+)\."
  return (
      (src + r"embeddings\.(word|position|token_type)_embeddings\.weight",
       dst + r"\1_embeddings/embedding", "copy"),
      (src + r"embeddings\.LayerNorm\.weight", dst + "LayerNorm/scale",
       "copy"),
      (src + r"embeddings\.LayerNorm\.bias", dst + "LayerNorm/bias", "copy"),
      *cross_layer_rows(layer, dst + r"layer_\1/", cross=False),
  )


def cross_layer_rows(src: str, dst: str, *, cross: bool
                      ) -> tuple[tuple[str, str, str], ...]:
  """Rows of a BertLayer (or METER's BertCrossLayer when `cross`)."""
  # `src` captures the layer index as group 1; parts start at group 2.
  rows = []
  for part in ("attention", "crossattention") if cross else ("attention",):
    rows += [
        (src + part + r"\.self\.(query|key|value)\.weight",
         dst + part + r"/\2/kernel", "linear"),
        (src + part + r"\.self\.(query|key|value)\.bias",
         dst + part + r"/\2/bias", "copy"),
        (src + part + r"\.output\.dense\.weight", dst + part + "/out/kernel",
         "linear"),
        (src + part + r"\.output\.dense\.bias", dst + part + "/out/bias",
         "copy"),
        (src + part + r"\.output\.LayerNorm\.weight",
         dst + part + "_norm/scale", "copy"),
        (src + part + r"\.output\.LayerNorm\.bias", dst + part + "_norm/bias",
         "copy"),
    ]
  rows += [
      (src + r"intermediate\.dense\.weight", dst + "mlp/fc1/kernel", "linear"),
      (src + r"intermediate\.dense\.bias", dst + "mlp/fc1/bias", "copy"),
      (src + r"output\.dense\.weight", dst + "mlp/fc2/kernel", "linear"),
      (src + r"output\.dense\.bias", dst + "mlp/fc2/bias", "copy"),
      (src + r"output\.LayerNorm\.weight", dst + "output_norm/scale", "copy"),
      (src + r"output\.LayerNorm\.bias", dst + "output_norm/bias", "copy"),
  ]
  return tuple(rows)


# RobertaModel saves bare keys; RobertaForMaskedLM (roberta-base on the hub)
# prefixes them with `roberta.`.
ROBERTA_TABLE = bert_rows(r"(?:roberta\.)?", "meter/text/")
ROBERTA_UNUSED: tuple[str, ...] = (
    r"(?:roberta\.)?pooler\..*", r"lm_head\..*", r".*\.position_ids",
    r".*\.token_type_ids",
)


def _clip_fields(hf: dict[str, Any], layers: int) -> dict[str, Any]:
  """MeterConfig vision fields from a CLIP or CLIPVision config.json."""
  vision = hf.get("vision_config") or hf
  available = vision.get("num_hidden_layers", 12)
  if layers > available:
    raise ValueError(
        f"vision_num_layers={layers} exceeds the CLIP checkpoint's "
        f"{available} layers.")
  return dict(
      vision_hidden_size=vision.get("hidden_size", 768),
      vision_num_heads=vision.get("num_attention_heads", 12),
      vision_intermediate_size=vision.get("intermediate_size", 3072),
      vision_act=vision.get("hidden_act", "quick_gelu"),
      vision_layer_norm_eps=vision.get("layer_norm_eps", 1e-5),
      image_size=vision.get("image_size", 224),
      patch_size=vision.get("patch_size", 16),
      num_channels=vision.get("num_channels", 3),
  )


def _roberta_fields(hf: dict[str, Any], layers: int) -> dict[str, Any]:
  """MeterConfig text fields from a RoBERTa config.json."""
  available = hf.get("num_hidden_layers", 12)
  if layers > available:
    raise ValueError(
        f"text_num_layers={layers} exceeds the RoBERTa checkpoint's "
        f"{available} layers.")
  return dict(
      vocab_size=hf["vocab_size"],
      text_hidden_size=hf.get("hidden_size", 768),
      text_num_heads=hf.get("num_attention_heads", 12),
      text_intermediate_size=hf.get("intermediate_size", 3072),
      text_act=hf.get("hidden_act", "gelu"),
      text_layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
      max_position_embeddings=hf.get("max_position_embeddings", 514),
      type_vocab_size=hf.get("type_vocab_size", 1),
      pad_token_id=hf.get("pad_token_id", 1),
  )


def meter_from_hf(
    clip_dir: str | pathlib.Path,
    roberta_dir: str | pathlib.Path,
    config: meter_lib.MeterConfig | None = None,
    *,
    seed: int = 0,
) -> tuple[meter_lib.Meter, dict[str, Any]]:
  """METER with encoders from local Hugging Face CLIP and RoBERTa dirs.

  The encoders' sizes come from the checkpoints' config.json files; the
  fusion blocks, poolers and head come from `config` and are randomly
  initialised (METER's own pre-training trains them). As METER, the image
  encoder keeps CLIP's first `config.vision_num_layers` blocks (11 of
  ViT-B/16's 12); the text encoder the first `config.text_num_layers`.
  `clip_dir` may hold a whole `CLIPModel` or a `CLIPVisionModel`.
  """
  clip_dir, roberta_dir = pathlib.Path(clip_dir), pathlib.Path(roberta_dir)
  config = config or meter_lib.MeterConfig()
  check_convertible(config.reduce)
  config = config.replace(
      **_clip_fields(read_json(clip_dir / "config.json"),
                     config.vision_num_layers),
      **_roberta_fields(read_json(roberta_dir / "config.json"),
                        config.text_num_layers))
  clip = drop_layers(load_state_dict(clip_dir), _HF_CLIP_L,
                      config.vision_num_layers)
  roberta = drop_layers(load_state_dict(roberta_dir),
                         r"(?:roberta\.)?encoder\.layer\.(\d+)\.",
                         config.text_num_layers)
  mapped = {**map_state_dict(clip, CLIP_VISION_TABLE, CLIP_VISION_UNUSED),
            **map_state_dict(roberta, ROBERTA_TABLE, ROBERTA_UNUSED)}
  model = meter_lib.Meter(config)
  example = meter_lib.example_inputs(config)
  fresh = flax.linen.meta.unbox(
      jax.jit(model.init)(jax.random.PRNGKey(seed), **example)["params"])
  fresh = {"/".join(k): np.asarray(v) for k, v in
           flax.traverse_util.flatten_dict(fresh).items()}
  for key in fresh:
    if key.startswith(("meter/vision/", "meter/text/")) and key not in mapped:
      raise ValueError(f"the encoder checkpoints lack parameter {key}.")
  params = fit_to_model({**fresh, **mapped}, model, example)
  return model, {"params": params}
