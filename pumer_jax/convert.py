"""Import Hugging Face checkpoints into pumer-jax models.

The key mapping is a table: each row maps a family of PyTorch state-dict
keys (a regular expression) to a Flax parameter path and a layout
transform. Every source key is either mapped or listed as unused; anything
else is an error, as is a model parameter the checkpoint lacks.

CLI:
  python -m pumer_jax.convert vilt --hf_dir DIR --out CKPT_DIR
  python -m pumer_jax.convert meter --ckpt meter_clip16_288_roberta_vqa.ckpt \
      --out CKPT_DIR
  python -m pumer_jax.convert meter --clip_dir DIR --roberta_dir DIR \
      --head vqa --num_labels 3129 --image_size 384 --out CKPT_DIR
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import flax
import jax
import numpy as np

from pumer_jax import checkpoint
from pumer_jax.models import meter as meter_lib
from pumer_jax.models.vilt import Vilt, ViltConfig, example_inputs

# (source regex, target path template, transform). Transforms:
#   linear: torch [out, in] -> flax kernel [in, out]
#   conv:   torch [out, in, kh, kw] -> flax kernel [kh, kw, in, out]
#   copy:   unchanged
_L = r"vilt\.encoder\.layer\.(\d+)\."
VILT_TABLE: tuple[tuple[str, str, str], ...] = (
    (r"vilt\.embeddings\.text_embeddings\.(word|position|token_type)"
     r"_embeddings\.weight",
     r"vilt/embeddings/text_embeddings/\1_embeddings/embedding", "copy"),
    (r"vilt\.embeddings\.text_embeddings\.LayerNorm\.weight",
     "vilt/embeddings/text_embeddings/LayerNorm/scale", "copy"),
    (r"vilt\.embeddings\.text_embeddings\.LayerNorm\.bias",
     "vilt/embeddings/text_embeddings/LayerNorm/bias", "copy"),
    (r"vilt\.embeddings\.cls_token", "vilt/embeddings/cls_token", "copy"),
    (r"vilt\.embeddings\.position_embeddings",
     "vilt/embeddings/position_embeddings", "copy"),
    (r"vilt\.embeddings\.patch_embeddings\.projection\.weight",
     "vilt/embeddings/patch_embeddings/kernel", "conv"),
    (r"vilt\.embeddings\.patch_embeddings\.projection\.bias",
     "vilt/embeddings/patch_embeddings/bias", "copy"),
    (r"vilt\.embeddings\.token_type_embeddings\.weight",
     "vilt/embeddings/token_type_embeddings/embedding", "copy"),
    (_L + r"(layernorm_before|layernorm_after)\.weight",
     r"vilt/layer_\1/\2/scale", "copy"),
    (_L + r"(layernorm_before|layernorm_after)\.bias",
     r"vilt/layer_\1/\2/bias", "copy"),
    (_L + r"attention\.attention\.(query|key|value)\.weight",
     r"vilt/layer_\1/attention/\2/kernel", "linear"),
    (_L + r"attention\.attention\.(query|key|value)\.bias",
     r"vilt/layer_\1/attention/\2/bias", "copy"),
    (_L + r"attention\.output\.dense\.weight",
     r"vilt/layer_\1/attention/out/kernel", "linear"),
    (_L + r"attention\.output\.dense\.bias",
     r"vilt/layer_\1/attention/out/bias", "copy"),
    (_L + r"intermediate\.dense\.weight", r"vilt/layer_\1/mlp/fc1/kernel",
     "linear"),
    (_L + r"intermediate\.dense\.bias", r"vilt/layer_\1/mlp/fc1/bias", "copy"),
    (_L + r"output\.dense\.weight", r"vilt/layer_\1/mlp/fc2/kernel", "linear"),
    (_L + r"output\.dense\.bias", r"vilt/layer_\1/mlp/fc2/bias", "copy"),
    (r"vilt\.layernorm\.weight", "vilt/layernorm/scale", "copy"),
    (r"vilt\.layernorm\.bias", "vilt/layernorm/bias", "copy"),
    (r"vilt\.pooler\.dense\.weight", "vilt/pooler/kernel", "linear"),
    (r"vilt\.pooler\.dense\.bias", "vilt/pooler/bias", "copy"),
    (r"classifier\.0\.weight", "classifier/dense/kernel", "linear"),
    (r"classifier\.0\.bias", "classifier/dense/bias", "copy"),
    (r"classifier\.1\.weight", "classifier/norm/scale", "copy"),
    (r"classifier\.1\.bias", "classifier/norm/bias", "copy"),
    (r"classifier\.3\.weight", "classifier/out/kernel", "linear"),
    (r"classifier\.3\.bias", "classifier/out/bias", "copy"),
    (r"rank_output\.weight", "rank/rank_output/kernel", "linear"),
    (r"rank_output\.bias", "rank/rank_output/bias", "copy"),
)
# Source keys deliberately not imported.
VILT_UNUSED: tuple[str, ...] = (
    r"mlm_score\..*",  # ViltForMaskedLM's MLM and ITM pre-training heads
    r".*\.position_ids",  # buffers older checkpoints saved
    r".*\.token_type_ids",
)

_TRANSFORMS = {
    "copy": lambda a: a,
    "linear": lambda a: a.T,
    "conv": lambda a: a.transpose(2, 3, 1, 0),
}


def map_state_dict(
    state: Mapping[str, np.ndarray],
    table: tuple[tuple[str, str, str], ...],
    unused: tuple[str, ...],
) -> dict[str, np.ndarray]:
  """Applies a key table; returns {flax path: array}.

  Raises ValueError naming every source key neither mapped nor unused.
  """
  compiled = [(re.compile(src), dst, kind) for src, dst, kind in table]
  skip = [re.compile(p) for p in unused]
  mapped, unexpected = {}, []
  for key, value in state.items():
    for pattern, dst, kind in compiled:
      if pattern.fullmatch(key):
        mapped[pattern.sub(dst, key)] = _TRANSFORMS[kind](np.asarray(value))
        break
    else:
      if not any(p.fullmatch(key) for p in skip):
        unexpected.append(key)
  if unexpected:
    raise ValueError(
        f"{len(unexpected)} checkpoint keys are neither mapped nor listed as "
        f"unused: {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}. "
        "Is this the right model family?")
  return mapped


def fit_to_model(
    mapped: dict[str, np.ndarray], model: Any, example: dict[str, Any]
) -> dict[str, Any]:
  """Checks mapped arrays against the model's parameter shapes.

  Returns the nested params tree. Errors name missing parameters (e.g. a
  head the checkpoint does not have), extra ones, and shape mismatches.
  """
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             **example))["params"]
  shapes = flax.linen.meta.unbox(shapes)
  want = {"/".join(k): v for k, v in
          flax.traverse_util.flatten_dict(shapes).items()}
  missing = sorted(set(want) - set(mapped))
  extra = sorted(set(mapped) - set(want))
  if missing or extra:
    raise ValueError(
        "checkpoint and model disagree (head/checkpoint mismatch?): "
        f"model parameters missing from the checkpoint: {missing[:8]}; "
        f"checkpoint parameters the model lacks: {extra[:8]}.")
  bad = [f"{k}: checkpoint {mapped[k].shape} vs model {want[k].shape}"
         for k in want if mapped[k].shape != want[k].shape]
  if bad:
    raise ValueError(f"shape mismatch: {bad[:8]}")
  flat = {tuple(k.split("/")): np.asarray(v, want[k].dtype)
          for k, v in mapped.items()}
  return flax.traverse_util.unflatten_dict(flat)


def load_state_dict(hf_dir: str | pathlib.Path) -> dict[str, np.ndarray]:
  """Reads model.safetensors, or pytorch_model.bin with weights_only=True."""
  hf_dir = pathlib.Path(hf_dir)
  if not hf_dir.is_dir():
    raise FileNotFoundError(
        f"{hf_dir} is not a directory; pass the local directory of a Hugging "
        "Face checkpoint (with config.json and model.safetensors).")
  safetensors_path = hf_dir / "model.safetensors"
  if safetensors_path.is_file():
    from safetensors.numpy import load_file
    return load_file(str(safetensors_path))
  bin_path = hf_dir / "pytorch_model.bin"
  if bin_path.is_file():
    import torch  # only needed for this legacy format
    state = torch.load(bin_path, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in state.items()}
  raise FileNotFoundError(
      f"{hf_dir} has neither model.safetensors nor pytorch_model.bin.")


def vilt_from_hf(
    hf_dir: str | pathlib.Path, **config_overrides
) -> tuple[Vilt, dict[str, Any]]:
  """Loads a local Hugging Face ViLT checkpoint as `(model, variables)`.

  The head follows the config's architecture (VQA, NLVR2, retrieval; MLM
  checkpoints give the backbone alone). `config_overrides` set ViltConfig
  fields, e.g. `reduce=ReduceConfig(method="pumer", ...)`.
  """
  hf_dir = pathlib.Path(hf_dir)
  config_path = hf_dir / "config.json"
  if not config_path.is_file():
    raise FileNotFoundError(f"{config_path} is missing.")
  config = ViltConfig.from_hf(json.loads(config_path.read_text()),
                              **config_overrides)
  if config.reduce.method == "dynamicvit":
    raise ValueError(
        "DynamicViT's keep predictors are not in Hugging Face checkpoints; "
        "convert with method 'none' and train the predictors (train.py).")
  mapped = map_state_dict(load_state_dict(hf_dir), VILT_TABLE, VILT_UNUSED)
  model = Vilt(config)
  params = fit_to_model(mapped, model, example_inputs(config))
  return model, {"params": params}


# ---------------------------------------------------------------------------
# METER: Hugging Face CLIP / RoBERTa encoders, and official METER checkpoints
# ---------------------------------------------------------------------------

_PROJECTIONS = {"q": "query", "k": "key", "v": "value", "out": "out"}


def _projection_rows(src: str, names: tuple[str, ...]
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
_V = "meter/vision/"
CLIP_VISION_TABLE: tuple[tuple[str, str, str], ...] = (
    (_HF_CLIP + r"embeddings\.patch_embedding\.weight",
     _V + "patch_embedding/kernel", "conv"),
    (_HF_CLIP + r"embeddings\.class_embedding", _V + "class_embedding",
     "copy"),
    (_HF_CLIP + r"embeddings\.position_embedding\.weight",
     _V + "position_embedding", "copy"),
    (_HF_CLIP + r"pre_layrnorm\.weight", _V + "pre_layernorm/scale", "copy"),
    (_HF_CLIP + r"pre_layrnorm\.bias", _V + "pre_layernorm/bias", "copy"),
    (_HF_CLIP + r"post_layernorm\.weight", _V + "post_layernorm/scale",
     "copy"),
    (_HF_CLIP + r"post_layernorm\.bias", _V + "post_layernorm/bias", "copy"),
    *_projection_rows(_HF_CLIP_L + r"self_attn\.", ("q", "k", "v", "out")),
    (_HF_CLIP_L + r"(layer_norm[12])\.weight", _V + r"layer_\1/\2/scale",
     "copy"),
    (_HF_CLIP_L + r"(layer_norm[12])\.bias", _V + r"layer_\1/\2/bias", "copy"),
    (_HF_CLIP_L + r"mlp\.(fc[12])\.weight", _V + r"layer_\1/mlp/\2/kernel",
     "linear"),
    (_HF_CLIP_L + r"mlp\.(fc[12])\.bias", _V + r"layer_\1/mlp/\2/bias",
     "copy"),
)
# A whole CLIPModel directory also holds the text tower and projections.
CLIP_VISION_UNUSED: tuple[str, ...] = (
    r"text_model\..*", r"visual_projection\.weight",
    r"text_projection\.weight", r"logit_scale", r".*\.position_ids",
)


def _bert_rows(src: str, dst: str) -> tuple[tuple[str, str, str], ...]:
  """Rows of one Hugging Face BERT-style encoder (embeddings + layers)."""
  layer = src + r"encoder\.layer\.(\d+)\."
  return (
      (src + r"embeddings\.(word|position|token_type)_embeddings\.weight",
       dst + r"\1_embeddings/embedding", "copy"),
      (src + r"embeddings\.LayerNorm\.weight", dst + "LayerNorm/scale",
       "copy"),
      (src + r"embeddings\.LayerNorm\.bias", dst + "LayerNorm/bias", "copy"),
      *_cross_layer_rows(layer, dst + r"layer_\1/", cross=False),
  )


def _cross_layer_rows(src: str, dst: str, *, cross: bool
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
ROBERTA_TABLE = _bert_rows(r"(?:roberta\.)?", "meter/text/")
ROBERTA_UNUSED: tuple[str, ...] = (
    r"(?:roberta\.)?pooler\..*", r"lm_head\..*", r".*\.position_ids",
    r".*\.token_type_ids",
)

# The official METER checkpoints (github.com/zdou0830/METER), the
# METERTransformerSS state dict. CLIP's fused `attn.in_proj_*` are split
# into `attn.{q,k,v}_proj.*` first (`_split_in_proj`).
_OV = r"vit_model\.visual\."
_OVL = _OV + r"transformer\.resblocks\.(\d+)\."
_CLASSIFIERS = {"vqa_classifier": "vqa", "snli_classifier": "ve",
                "nlvr2_classifier": "nlvr2"}
METER_OFFICIAL_TABLE: tuple[tuple[str, str, str], ...] = (
    (_OV + r"conv1\.weight", _V + "patch_embedding/kernel", "conv"),
    (_OV + r"class_embedding", _V + "class_embedding", "copy"),
    (_OV + r"positional_embedding", _V + "position_embedding", "copy"),
    (_OV + r"ln_pre\.weight", _V + "pre_layernorm/scale", "copy"),
    (_OV + r"ln_pre\.bias", _V + "pre_layernorm/bias", "copy"),
    (_OV + r"ln_post\.weight", _V + "post_layernorm/scale", "copy"),
    (_OV + r"ln_post\.bias", _V + "post_layernorm/bias", "copy"),
    *_projection_rows(_OVL + r"attn\.", ("q", "k", "v", "out")),
    (_OVL + r"ln_([12])\.weight", _V + r"layer_\1/layer_norm\2/scale", "copy"),
    (_OVL + r"ln_([12])\.bias", _V + r"layer_\1/layer_norm\2/bias", "copy"),
    (_OVL + r"mlp\.c_fc\.weight", _V + r"layer_\1/mlp/fc1/kernel", "linear"),
    (_OVL + r"mlp\.c_fc\.bias", _V + r"layer_\1/mlp/fc1/bias", "copy"),
    (_OVL + r"mlp\.c_proj\.weight", _V + r"layer_\1/mlp/fc2/kernel", "linear"),
    (_OVL + r"mlp\.c_proj\.bias", _V + r"layer_\1/mlp/fc2/bias", "copy"),
    *_bert_rows(r"text_transformer\.", "meter/text/"),
    (r"cross_modal_(text|image)_transform\.weight", r"meter/\1_transform/kernel",
     "linear"),
    (r"cross_modal_(text|image)_transform\.bias", r"meter/\1_transform/bias",
     "copy"),
    (r"token_type_embeddings\.weight",
     "meter/token_type_embeddings/embedding", "copy"),
    *_cross_layer_rows(r"cross_modal_text_layers\.(\d+)\.",
                       r"meter/text_layer_\1/", cross=True),
    *_cross_layer_rows(r"cross_modal_image_layers\.(\d+)\.",
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


def _drop_layers(state: Mapping[str, np.ndarray], pattern: str, keep: int
                 ) -> dict[str, np.ndarray]:
  """Drops the keys of layers >= `keep` (`pattern` captures the index)."""
  compiled = re.compile(pattern)
  out = {}
  for key, value in state.items():
    match = compiled.match(key)
    if match is None or int(match[1]) < keep:
      out[key] = value
  return out


def _layer_count(state: Mapping[str, Any], pattern: str) -> int:
  compiled = re.compile(pattern)
  found = {int(m[1]) for k in state if (m := compiled.match(k))}
  return max(found) + 1 if found else 0


def _read_json(path: pathlib.Path) -> dict[str, Any]:
  if not path.is_file():
    raise FileNotFoundError(
        f"{path} is missing; pass the local directory of a Hugging Face "
        "checkpoint (config.json + model.safetensors).")
  return json.loads(path.read_text())


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
  if config.reduce.method == "dynamicvit":
    raise ValueError(
        "DynamicViT's keep predictors need training: convert with method "
        "'none', then train with method 'dynamicvit'.")
  config = config.replace(
      **_clip_fields(_read_json(clip_dir / "config.json"),
                     config.vision_num_layers),
      **_roberta_fields(_read_json(roberta_dir / "config.json"),
                        config.text_num_layers))
  clip = _drop_layers(load_state_dict(clip_dir), _HF_CLIP_L,
                      config.vision_num_layers)
  roberta = _drop_layers(load_state_dict(roberta_dir),
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
    import torch  # only needed for this format
    try:
      state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for bad files
      raise ValueError(
          f"could not load {path} with weights_only=True ({type(e).__name__}:"
          f" {e}); it is corrupt or not a METER checkpoint.") from e
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
  fusion = _layer_count(state, r"cross_modal_text_layers\.(\d+)\.")
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
      vision_num_layers=_layer_count(state, _OVL),
      vision_intermediate_size=shape(
          "vit_model.visual.transformer.resblocks.0.mlp.c_fc.weight")[0],
      image_size=grid * patch[-1], patch_size=patch[-1],
      num_channels=patch[1],
      vocab_size=words[0], text_hidden_size=words[1],
      text_num_layers=_layer_count(
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


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="python -m pumer_jax.convert",
      description="Convert a PyTorch checkpoint to an orbax model checkpoint.")
  sub = parser.add_subparsers(dest="family", required=True)
  vilt = sub.add_parser("vilt", help="ViLT (dandelin/vilt-b32-*)")
  vilt.add_argument("--hf_dir", required=True,
                    help="local dir with config.json + model.safetensors")
  meter = sub.add_parser(
      "meter", help="METER: an official checkpoint (--ckpt), or encoders "
      "from Hugging Face CLIP + RoBERTa dirs with a fresh fusion")
  meter.add_argument("--ckpt", help="official METER .ckpt (Lightning)")
  meter.add_argument("--clip_dir", help="Hugging Face CLIP dir")
  meter.add_argument("--roberta_dir", help="Hugging Face RoBERTa dir")
  meter.add_argument("--head", default="vqa",
                     help="with --clip_dir: vqa|ve|nlvr2|retrieval|none")
  meter.add_argument("--num_labels", type=int, default=3129)
  meter.add_argument("--vision_layers", type=int, default=0,
                     help="CLIP blocks to keep (0: all but the last, as "
                     "METER)")
  meter.add_argument("--num_heads", type=int, default=0,
                     help="with --ckpt: heads per attention in every module "
                     "(0: width / 64, as METER)")
  meter.add_argument("--image_size", type=int, default=0,
                     help="input resolution to pin (0: the checkpoint's)")
  for p in (vilt, meter):
    p.add_argument("--out", required=True, help="output checkpoint dir")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out")
  args = parser.parse_args(argv)
  if args.family == "vilt":
    model, variables = vilt_from_hf(args.hf_dir)
  elif args.ckpt:
    if args.clip_dir or args.roberta_dir:
      parser.error("give either --ckpt or --clip_dir/--roberta_dir.")
    overrides = {}
    if args.image_size:
      overrides["input_size"] = (args.image_size,) * 2
    if args.num_heads:
      overrides.update(vision_num_heads=args.num_heads,
                       text_num_heads=args.num_heads,
                       num_attention_heads=args.num_heads)
    model, variables = meter_from_official(args.ckpt, **overrides)
  elif args.clip_dir and args.roberta_dir:
    clip_json = _read_json(pathlib.Path(args.clip_dir) / "config.json")
    clip_layers = (clip_json.get("vision_config") or clip_json).get(
        "num_hidden_layers", 12)
    roberta_json = _read_json(pathlib.Path(args.roberta_dir) / "config.json")
    config = meter_lib.MeterConfig(
        vision_num_layers=args.vision_layers or clip_layers - 1,
        text_num_layers=roberta_json.get("num_hidden_layers", 12),
        head=args.head, num_labels=args.num_labels,
        num_images=2 if args.head == "nlvr2" else 1,
        input_size=(args.image_size,) * 2 if args.image_size else None)
    model, variables = meter_from_hf(args.clip_dir, args.roberta_dir, config)
  else:
    parser.error("meter needs --ckpt, or both --clip_dir and --roberta_dir.")
  out = checkpoint.save_model(args.out, model.config, variables["params"],
                              overwrite=args.overwrite)
  count = sum(a.size for a in jax.tree_util.tree_leaves(variables))
  print(f"wrote {out} ({model.config.head} head, {count:,} parameters)")


if __name__ == "__main__":
  main()
