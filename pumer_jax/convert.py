"""Import Hugging Face checkpoints into pumer-jax models.

The key mapping is a table: each row maps a family of PyTorch state-dict
keys (a regular expression) to a Flax parameter path and a layout
transform. Every source key is either mapped or listed as unused; anything
else is an error, as is a model parameter the checkpoint lacks.

CLI:
  python -m pumer_jax.convert vilt --hf_dir DIR --out CKPT_DIR
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


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="python -m pumer_jax.convert",
      description="Convert a Hugging Face checkpoint to an orbax checkpoint.")
  sub = parser.add_subparsers(dest="family", required=True)
  vilt = sub.add_parser("vilt", help="ViLT (dandelin/vilt-b32-*)")
  vilt.add_argument("--hf_dir", required=True,
                    help="local dir with config.json + model.safetensors")
  vilt.add_argument("--out", required=True, help="output checkpoint dir")
  vilt.add_argument("--overwrite", action="store_true",
                    help="replace a non-empty --out")
  args = parser.parse_args(argv)
  model, variables = vilt_from_hf(args.hf_dir)
  out = checkpoint.save_model(args.out, model.config, variables["params"],
                              overwrite=args.overwrite)
  count = sum(a.size for a in jax.tree_util.tree_leaves(variables))
  print(f"wrote {out} ({model.config.head} head, {count:,} parameters)")


if __name__ == "__main__":
  main()
