"""Model checkpoints on disk: orbax parameters plus a JSON model config.

A model directory holds `params/` (an orbax checkpoint of the parameter
tree) and `model_config.json` (the dataclass config, reducer included), so
`load_model(dir)` rebuilds the model without knowing how it was made.
Nothing is overwritten unless the caller says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp

from pumer_jax.models import ARCHITECTURES, architecture_of
from pumer_jax.reduce import ReduceConfig, method_class

CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"
# The `reduce` block of files written before each method had its own fields
# (one flat record of every method's fields): a key the saved method does
# not take is dropped where it holds this old default, else an error.
LEGACY_REDUCE_DEFAULTS = dict(
    layers=(), prune_ratio=0.0, image_merge_ratio=0.0, text_merge_ratio=0.0,
    tome_r=0, tome_schedule="constant", tome_inflection=0.0, keep_ratios=(),
    prop_attn=True, protect_cls=True, clamp_merge=False, smres_size=None,
    gumbel_temperature=1.0, semantics="official", score_heads="mean")


def reduce_from_dict(values: dict[str, Any]) -> ReduceConfig:
  """A saved `reduce` block, in the current format or the legacy flat one."""
  values = dict(values)
  own = set(method_class(values.get("method", "none")).field_names())
  for key in sorted(set(values) - own - {"method"}):
    if key in LEGACY_REDUCE_DEFAULTS and _same(values[key],
                                               LEGACY_REDUCE_DEFAULTS[key]):
      del values[key]
  return ReduceConfig.from_mapping(values)


def _same(a: Any, b: Any) -> bool:
  norm = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v
  return norm(a) == norm(b)


def config_to_dict(config: Any) -> dict[str, Any]:
  values = dataclasses.asdict(config)
  values["reduce"] = config.reduce.to_dict()
  return {"model": architecture_of(config), **values}


def config_from_dict(values: dict[str, Any]) -> Any:
  values = dict(values)
  kind = values.pop("model", None)
  if kind not in ARCHITECTURES:
    raise ValueError(
        f"{CONFIG_FILE} names model {kind!r}; expected one of "
        f"{sorted(ARCHITECTURES)}.")
  cls = ARCHITECTURES[kind].config
  values["reduce"] = reduce_from_dict(values.get("reduce") or {})
  if values.get("input_size") is not None:
    values["input_size"] = tuple(values["input_size"])
  values["pruned_sizes"] = tuple(
      (m, k, tuple(sizes)) for m, k, sizes in values.get("pruned_sizes", ()))
  return cls(**values)


def save_model(
    directory: str | pathlib.Path, config: Any, params: Any, *,
    overwrite: bool = False,
) -> pathlib.Path:
  """Writes params (orbax) and config (JSON) to `directory`.

  Raises FileExistsError if `directory` holds anything and not `overwrite`.
  """
  directory = pathlib.Path(directory).absolute()
  if directory.exists() and any(directory.iterdir()) and not overwrite:
    raise FileExistsError(
        f"{directory} is not empty; choose a new directory or pass "
        "overwrite=True (--overwrite) to replace it.")
  directory.mkdir(parents=True, exist_ok=True)
  params = nn.meta.unbox(params)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(directory / PARAMS_DIR, params, force=overwrite)
  if jax.process_index() == 0:
    (directory / CONFIG_FILE).write_text(
        json.dumps(config_to_dict(config), indent=2) + "\n")
  return directory


def _on_local_device(ckptr: ocp.StandardCheckpointer, path: pathlib.Path):
  """The saved tree's shapes and dtypes, placed on this process's first
  device: a model saved by a multi-device (or multi-host) run loads in a
  one-device process, whatever the topology that wrote it."""
  tree = ckptr.metadata(path)
  tree = getattr(tree, "item_metadata", tree)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                        sharding=device), tree)


def load_model(
    directory: str | pathlib.Path, **config_overrides
) -> tuple[nn.Module, dict[str, Any]]:
  """Restores `(model, {"params": ...})` saved by `save_model`.

  `config_overrides` replace config fields, e.g. `reduce=ReduceConfig(...)`
  to run a checkpoint under another reducer.
  """
  directory = pathlib.Path(directory).absolute()
  config_path = directory / CONFIG_FILE
  if not config_path.is_file():
    raise FileNotFoundError(
        f"{config_path} is missing: {directory} is not a model checkpoint "
        "(write one with `python -m pumer_jax.convert` or train.py).")
  try:
    config = config_from_dict(json.loads(config_path.read_text()))
  except (json.JSONDecodeError, TypeError, ValueError) as e:
    raise ValueError(f"{config_path} is corrupt: {e}") from e
  config = dataclasses.replace(config, **config_overrides)
  model = ARCHITECTURES[architecture_of(config)].module(config)
  try:
    with ocp.StandardCheckpointer() as ckptr:
      params = ckptr.restore(directory / PARAMS_DIR,
                             _on_local_device(ckptr, directory / PARAMS_DIR))
  except Exception as e:  # orbax raises many types for damaged files
    raise ValueError(
        f"could not restore parameters from {directory / PARAMS_DIR} "
        f"({type(e).__name__}: {e}); the checkpoint is corrupt or "
        "incomplete. Re-run the conversion or pick an earlier checkpoint."
    ) from e
  return model, {"params": params}


def weights_digest(model_dir: str | pathlib.Path) -> str:
  """A hex digest of a saved model's config and weights, not of its files
  (orbax names and stamps them anew at every save): equal for the same
  model wherever it is saved, different for a replaced one. Caches of
  results computed from a model key on it."""
  model, variables = load_model(model_dir)
  digest = hashlib.sha1(repr(model.config).encode())
  for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"]):
    leaf = np.asarray(leaf)
    digest.update(f"{jax.tree_util.keystr(path)} {leaf.dtype} "
                  f"{leaf.shape}".encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()
