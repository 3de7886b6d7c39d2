"""METER from an official checkpoint (github.com/zdou0830/METER).

The architecture and head are read off the parameter shapes; the file is
loaded with `weights_only=True`, so one that needs arbitrary unpickling is
refused rather than executed.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from pumer_jax.convert.mapping import (
    fit_to_model,
    layer_count,
    load_pickled_weights,
    map_state_dict,
)
from pumer_jax.convert.meter_hf import (
    METER_VISION,
    bert_rows,
    cross_layer_rows,
    projection_rows,
)
from pumer_jax.models import meter as meter_lib

# The official METER checkpoints (github.com/zdou0830/METER), the
# METERTransformerSS state dict. CLIP's fused `attn.in_proj_*` are split
# into `attn.{q,k,v}_proj.*` first (`_split_in_proj`).
_OV = r"vit_model\.visual\."
_OVL = _OV + r"transformer\.resblocks\.(\d+)\."
_CLASSIFIERS = {"vqa_classifier": "vqa", "snli_classifier": "ve",
                "nlvr2_classifier": "nlvr2"}
METER_OFFICIAL_TABLE: tuple[tuple[str, str, str], ...] = (
    (_OV + r"conv1\.weight", METER_VISION + "patch_embedding/kernel", "conv"),
    (_OV + r"class_embedding", METER_VISION + "class_embedding", "copy"),
    (_OV + r"positional_embedding", METER_VISION + "position_embedding", "copy"),
    (_OV + r"ln_pre\.weight", METER_VISION + "pre_layernorm/scale", "copy"),
    (_OV + r"ln_pre\.bias", METER_VISION + "pre_layernorm/bias", "copy"),
    (_OV + r"ln_post\.weight", METER_VISION + "post_layernorm/scale", "copy"),
    (_OV + r"ln_post\.bias", METER_VISION + "post_layernorm/bias", "copy"),
    *projection_rows(_OVL + r"attn\.", ("q", "k", "v", "out")),
    (_OVL + r"ln_([12])\.weight", METER_VISION + r"layer_\1/layer_norm\2/scale", "copy"),
    (_OVL + r"ln_([12])\.bias", METER_VISION + r"layer_\1/layer_norm\2/bias", "copy"),
    (_OVL + r"mlp\.c_fc\.weight", METER_VISION + r"layer_\1/mlp/fc1/kernel", "linear"),
    (_OVL + r"mlp\.c_fc\.bias", METER_VISION + r"layer_\1/mlp/fc1/bias", "copy"),
    (_OVL + r"mlp\.c_proj\.weight", METER_VISION + r"layer_\1/mlp/fc2/kernel", "linear"),
    (_OVL + r"mlp\.c_proj\.bias", METER_VISION + r"layer_\1/mlp/fc2/bias", "copy"),
    *bert_rows(r"text_transformer\.", "meter/text/"),
    (r"cross_modal_(text|image)_transform\.weight", r"meter/\1_transform/kernel",
     "linear"),
    (r"cross_modal_(text|image)_transform\.bias", r"meter/\1_transform/bias",
     "copy"),
    (r"token_type_embeddings\.weight",
     "meter/token_type_embeddings/embedding", "copy"),
    *cross_layer_rows(r"cross_modal_text_layers\.(\d+)\.",
                       r"meter/text_layer_\1/", cross=True),
    *cross_layer_rows(r"cross_modal_image_layers\.(\d+)\.",
                       r"meter/image_layer_\1/", cross=True),
    (r"cross_modal_(text|image)_pooler\.dense\.weight",
     r"meter/\1_pooler/kernel", "linear"),
    (r"cross_modal_(text|image)_pooler\.dense\.bias", r"meter/\1_pooler/bias",
     "copy"),
    (r"(?:vqa|snli|nlvr2)_classifier\.0\.weight", "classifier/dense/kernel",
     "linear"),
    (r"(?:vqa|snli|nlvr2)_classifier\.0\.bias", "classifier/dense/bias",
     "copy"),
    (r"(?:vqa|snli|nlvr2)_classifier\.1\.weight", "classifier/norm/scale",
     "copy"),
    (r"(?:vqa|snli|nlvr2)_classifier\.1\.bias", "classifier/norm/bias", "copy"),
    (r"(?:vqa|snli|nlvr2)_classifier\.3\.weight", "classifier/out/kernel",
     "linear"),
    (r"(?:vqa|snli|nlvr2)_classifier\.3\.bias", "classifier/out/bias", "copy"),
    (r"rank_output\.weight", "rank/rank_output/kernel", "linear"),
    (r"rank_output\.bias", "rank/rank_output/bias", "copy"),
)
METER_OFFICIAL_UNUSED: tuple[str, ...] = (
    # Leftovers of CLIP's text tower inside `vit_model`.
    r"vit_model\.positional_embedding", r"vit_model\.ln_final\..*",
    r"vit_model\.token_embedding\.weight",
    r"text_transformer\.pooler\..*",  # METER never calls RoBERTa's pooler
    r".*\.position_ids", r".*\.token_type_ids",  # buffers
    r"mlm_score\..*", r"itm_score\..*",  # pre-training heads
)


def _split_in_proj(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """CLIP's fused `attn.in_proj_{weight,bias}` [3D, ...] -> q, k, v keys."""
  out = {}
  for key, value in state.items():
    match = re.fullmatch(r"(.*\.attn\.)in_proj_(weight|bias)", key)
    if match is None:
      out[key] = value
      continue
    for name, part in zip("qkv", np.split(np.asarray(value), 3, axis=0)):
      out[f"{match[1]}{name}_proj.{match[2]}"] = part
  return out


def load_official_state_dict(ckpt: str | pathlib.Path | Mapping[str, Any]
                             ) -> dict[str, np.ndarray]:
  """The model weights of an official METER (PyTorch Lightning) checkpoint.

  Loads with `weights_only=True`: a checkpoint that needs arbitrary
  unpickling is refused rather than executed.
  """
  if isinstance(ckpt, Mapping):
    state = ckpt
  else:
    path = pathlib.Path(ckpt)
    if not path.is_file():
      raise FileNotFoundError(
          f"{path} is not a file; pass an official METER checkpoint, e.g. "
          "meter_clip16_288_roberta_vqa.ckpt from github.com/zdou0830/METER.")
    state = load_pickled_weights(path)
  state = state.get("state_dict", state)
  return {k: np.asarray(v.float().numpy() if hasattr(v, "numpy") else v)
          for k, v in state.items()}


def official_meter_config(state: Mapping[str, np.ndarray], **overrides
                          ) -> meter_lib.MeterConfig:
  """Reads the architecture and head off an official state dict's shapes."""
  def shape(key):
    if key not in state:
      raise ValueError(
          f"{key} is missing: this is not a METER-CLIP-RoBERTa checkpoint.")
    return np.shape(state[key])

  patch = shape("vit_model.visual.conv1.weight")
  positions = shape("vit_model.visual.positional_embedding")[0]
  grid = int(round((positions - 1) ** 0.5))
  vision_width = patch[0]
  words = shape("text_transformer.embeddings.word_embeddings.weight")
  fusion = layer_count(state, r"cross_modal_text_layers\.(\d+)\.")
  hidden = shape("cross_modal_text_transform.weight")[0]
  heads = [h for prefix, h in _CLASSIFIERS.items()
           if f"{prefix}.3.weight" in state]
  if heads:
    head = heads[0]
    prefix = [p for p, h in _CLASSIFIERS.items() if h == head][0]
    num_labels = shape(f"{prefix}.3.weight")[0]
  elif "rank_output.weight" in state:
    head, num_labels = "retrieval", 1
  else:
    head, num_labels = "none", 1
  values = dict(
      vision_hidden_size=vision_width,
      vision_num_layers=layer_count(state, _OVL),
      vision_intermediate_size=shape(
          "vit_model.visual.transformer.resblocks.0.mlp.c_fc.weight")[0],
      image_size=grid * patch[-1], patch_size=patch[-1],
      num_channels=patch[1],
      vocab_size=words[0], text_hidden_size=words[1],
      text_num_layers=layer_count(
          state, r"text_transformer\.encoder\.layer\.(\d+)\."),
      text_intermediate_size=shape(
          "text_transformer.encoder.layer.0.intermediate.dense.weight")[0],
      max_position_embeddings=shape(
          "text_transformer.embeddings.position_embeddings.weight")[0],
      type_vocab_size=shape(
          "text_transformer.embeddings.token_type_embeddings.weight")[0],
      hidden_size=hidden, num_fusion_layers=fusion,
      intermediate_size=shape(
          "cross_modal_text_layers.0.intermediate.dense.weight")[0],
      head=head, num_labels=num_labels,
      num_images=shape("token_type_embeddings.weight")[0] - 1,
  )
  # Head counts are not in the shapes: METER keeps 64-wide heads.
  values.update(vision_num_heads=vision_width // 64,
                text_num_heads=words[1] // 64,
                num_attention_heads=hidden // 64)
  values.update(overrides)
  return meter_lib.MeterConfig(**values)


def meter_from_official(
    ckpt: str | pathlib.Path | Mapping[str, Any], **config_overrides
) -> tuple[meter_lib.Meter, dict[str, Any]]:
  """Loads an official METER checkpoint as `(model, variables)`.

  The architecture and head are read off the parameter shapes; the keys go
  through `METER_OFFICIAL_TABLE`, and a key neither mapped nor in
  `METER_OFFICIAL_UNUSED` is an error. `config_overrides` set MeterConfig
  fields, e.g. `reduce=ReduceConfig(...)` or `input_size=(384, 384)`.
  """
  state = _split_in_proj(load_official_state_dict(ckpt))
  config = official_meter_config(state, **config_overrides)
  mapped = map_state_dict(state, METER_OFFICIAL_TABLE, METER_OFFICIAL_UNUSED)
  model = meter_lib.Meter(config)
  params = fit_to_model(mapped, model, meter_lib.example_inputs(config))
  return model, {"params": params}
