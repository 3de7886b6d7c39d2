"""State-dict tables: map PyTorch keys onto Flax parameters, checked.

Each row of a table maps a family of PyTorch state-dict keys (a regular
expression) to a Flax parameter path and a layout transform. Every source
key is either mapped or listed as unused; anything else is an error, as is
a model parameter the checkpoint lacks or a shape that disagrees.
"""

from __future__ import annotations

import json
import pathlib
import pickle
import re
from collections.abc import Mapping
from typing import Any

import flax
import jax
import numpy as np

# Tables are (source regex, target path template, transform). Transforms:
#   linear: torch [out, in] -> flax kernel [in, out]
#   conv:   torch [out, in, kh, kw] -> flax kernel [kh, kw, in, out]
#   copy:   unchanged
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
    state = load_pickled_weights(bin_path)
    return {k: v.float().numpy() for k, v in state.items()}
  raise FileNotFoundError(
      f"{hf_dir} has neither model.safetensors nor pytorch_model.bin.")


def load_pickled_weights(path: pathlib.Path) -> Mapping[str, Any]:
  """A pickle-based PyTorch file (.bin, .ckpt), read with `weights_only=True`.

  Unpickling anything but tensors and plain containers can run arbitrary
  code, so a file that needs more is refused, never loaded unsafely.
  """
  import torch  # only needed for these legacy formats
  try:
    return torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    raise ValueError(
        f"refused to load {path}: it holds Python objects beyond tensors, and "
        "unpickling them (torch.load with weights_only=False) could run "
        "arbitrary code. Re-save just its state dict from a trusted "
        "environment (ideally as model.safetensors) and convert that. "
        f"({str(e).splitlines()[0][:200]})") from e
  except Exception as e:  # torch raises several types for damaged files
    raise ValueError(
        f"could not load {path} with weights_only=True ({type(e).__name__}: "
        f"{str(e)[:200]}); the file is corrupt or not a PyTorch checkpoint."
    ) from e


def drop_layers(state: Mapping[str, np.ndarray], pattern: str, keep: int
                 ) -> dict[str, np.ndarray]:
  """Drops the keys of layers >= `keep` (`pattern` captures the index)."""
  compiled = re.compile(pattern)
  out = {}
  for key, value in state.items():
    match = compiled.match(key)
    if match is None or int(match[1]) < keep:
      out[key] = value
  return out


def layer_count(state: Mapping[str, Any], pattern: str) -> int:
  compiled = re.compile(pattern)
  found = {int(m[1]) for k in state if (m := compiled.match(k))}
  return max(found) + 1 if found else 0


def read_json(path: pathlib.Path) -> dict[str, Any]:
  if not path.is_file():
    raise FileNotFoundError(
        f"{path} is missing; pass the local directory of a Hugging Face "
        "checkpoint (config.json + model.safetensors).")
  return json.loads(path.read_text())


def check_convertible(reduce: Any) -> None:
  """A released checkpoint holds no reducer parameters: a reducer that owns
  some (DynamicViT's keep predictors) must be trained, not converted."""
  if reduce.param_stages():
    raise ValueError(
        f"reduce.method={reduce.method!r} owns parameters "
        f"({reduce.param_name}_*) that no released checkpoint holds: "
        "convert with method 'none', then train with this method "
        "(train.py, init_from=the converted model).")
