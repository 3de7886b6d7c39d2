"""ViLT from a local Hugging Face checkpoint (`dandelin/vilt-b32-*`).

Parameter names map one-to-one onto Hugging Face `ViltModel`, so the table
is a list of renames and transposes.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from pumer_jax.convert.mapping import (
    check_convertible,
    fit_to_model,
    load_state_dict,
    map_state_dict,
)
from pumer_jax.models.vilt import Vilt, ViltConfig, example_inputs

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
  check_convertible(config.reduce)
  mapped = map_state_dict(load_state_dict(hf_dir), VILT_TABLE, VILT_UNUSED)
  model = Vilt(config)
  params = fit_to_model(mapped, model, example_inputs(config))
  return model, {"params": params}
