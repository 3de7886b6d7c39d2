"""Every config key with its default; configs/*.py start from `base_config()`.

The returned ConfigDict is locked, so `--config.optim.lrr=...` (a misspelt
key) is an error instead of a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib

import ml_collections

from pumer_jax.models import ARCHITECTURES
from pumer_jax.reduce import ReduceConfig


def _dataclass_dict(obj, skip=()) -> dict:
  return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
          if f.name not in skip}


def reduce_config(method: str = "none", **values
                  ) -> ml_collections.ConfigDict:
  """A `reduce` block: `method` and every field of that method (its
  defaults overridden by `values`), validated as the method validates."""
  return ml_collections.ConfigDict(
      ReduceConfig(method=method, **values).to_dict())


def pick(choices: dict, name: str, what: str) -> object:
  """`choices[name]`, or an error naming the variant and every choice."""
  if name not in choices:
    raise ValueError(f"config variant {what}={name!r} is not one of "
                     f"{sorted(choices)}.")
  return choices[name]


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses a config variant string, `key=value,flag`, big_vision style.

  Only keys named in `defaults` are accepted; a bare `flag` means True.
  Values take the type of their default.
  """
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, _, raw = item.partition("=")
    if key not in defaults:
      raise ValueError(f"config variant {key!r} is not one of "
                       f"{sorted(defaults)}.")
    kind = type(defaults[key])
    if kind is bool:
      values[key] = raw.lower() not in ("0", "false", "no") if raw else True
    else:
      values[key] = kind(raw)
  return ml_collections.ConfigDict(values)


def base_config(arch: str = "vilt") -> ml_collections.ConfigDict:
  """All keys; `model` holds the fields of `arch`'s config dataclass."""
  if arch not in ARCHITECTURES:
    raise ValueError(f"arch={arch!r} must be one of {sorted(ARCHITECTURES)}.")
  c = ml_collections.ConfigDict()
  c.arch = arch  # vilt | meter
  c.task = "vqa"  # vqa | ve | nlvr2 | retrieval
  c.seed = 0
  c.batch_size = 32  # global, over all devices and hosts
  c.total_steps = 1000
  # Stop after this many steps (0: at total_steps); the learning-rate
  # schedule stays that of total_steps (a run cut short on purpose).
  c.stop_at = 0
  c.log_every = 50
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.progress = True
  # Input-value checks inside jit (token ids within the embedding table,
  # finite pixels, first text token unmasked) via checkify, in the train,
  # eval and bench steps. Outside jit they always run. Costs a host sync
  # per step (README.md has the measured cost); the runlocal variants set it.
  c.debug_checks = False
  # A model dir to start from (`python -m pumer_jax.convert`'s output or a
  # run's WORKDIR/model): fine-tuning copies every parameter that fits;
  # EfficientVLM's prune stage takes the distilled student from here.
  c.init_from = ""

  model = _dataclass_dict(ARCHITECTURES[arch].config(), skip=("reduce",))
  model["input_size"] = (384, 384)
  c.model = ml_collections.ConfigDict(model)
  c.reduce = reduce_config()
  # Reducers eval.py applies off the shelf, by method name.
  c.reducers = ml_collections.ConfigDict(dict(
      none=reduce_config(),
      pumer=reduce_config(method="pumer", layers=(2, 5, 8), prune_ratio=0.1,
                          image_merge_ratio=0.3, text_merge_ratio=0.2),
      tome=reduce_config(method="tome", tome_r=8),
      dynamicvit=reduce_config(method="dynamicvit", layers=(3, 6, 9),
                               keep_ratios=(0.7, 0.49, 0.343)),
      smres=reduce_config(method="smres", smres_size=(288, 288)),
      # EViT's reference placement for 12 layers (its drop_loc) and rate.
      evit=reduce_config(method="evit", layers=(3, 6, 9), keep_rate=0.7),
  ))

  c.data = ml_collections.ConfigDict(dict(
      name="shapes_vqa",  # shapes_vqa | vqa_v2 | snli_ve | nlvr2 | flickr30k
      data_dir="",  # TFDS data dir; "" = ~/tensorflow_datasets
      manual_dir="",  # the official files, for the real datasets
      # Processes reading the image files while a real dataset's image
      # tables are written (0: one; worth it on NFS or a mounted bucket).
      prepare_processes=0,
      text_len=40,
      tokenizer="",  # a BERT vocab file or tokenizer dir ("" = dataset's own)
      normalize="vilt",
      train_split="train",
      worker_count=0,
      # Passed to the dataset's BuilderConfig (shapes_vqa: image_size,
      # num_train, ...); set in the config file, overridable by flag.
      builder_config=ml_collections.ConfigDict(),
  ))
  c.optim = ml_collections.ConfigDict(dict(
      lr=1e-4, end_lr=0.0, warmup_steps=100, decay="linear", b1=0.9,
      b2=0.999, weight_decay=0.01, grad_clip=1.0,
      # Learning-rate multipliers per parameter group (optim.GROUPS).
      lr_mults=ml_collections.ConfigDict(dict(head=10.0, fusion=1.0,
                                              reducer=1.0)),
  ))
  # Knowledge distillation from a frozen teacher, for every trainer. Weights
  # of the loss terms: task, logits (KL at `temperature`), hidden (MSE of
  # the pooled features when fine-tuning a reducer, whose token counts
  # differ from the teacher's; of every student hidden state i against
  # teacher hidden 2i in EfficientVLM), attn (EfficientVLM only: attention
  # probabilities of student layer i against teacher layer 2i+1).
  c.distill = ml_collections.ConfigDict(dict(
      teacher="",  # a model dir: the fine-tuned, unreduced model
      temperature=1.0, task=1.0, logits=1.0, hidden=0.0, attn=0.0,
  ))
  # VQA's BCE over answers: "sum" (ViLT, METER) or "mean" (PuMer's code;
  # the paper configs set it). See train/losses.vqa_bce.
  # patch_weight: the weight of a patch head's per-patch cross-entropy
  # (model.patch_classes; shapes_vqa's objects; 0 = off). grounding_weight:
  # the weight of a grounding head's per-patch BCE on the patches the
  # question names (model.grounding_layer; shapes_vqa's referents; 0 = off).
  c.loss = ml_collections.ConfigDict(dict(vqa_reduction="sum",
                                          patch_weight=0.0,
                                          grounding_weight=0.0))
  # EfficientVLM (configs/efficientvlm.py; its own trainer): "" (off: the
  # fine-tuning trainer), "distill" (a half-depth student of distill.teacher)
  # or "prune" (gates on the student at init_from, KD continuing).
  c.stage = ""
  c.prune = ml_collections.ConfigDict(dict(
      target=0.5,  # the expected sparsity of the prunable parameters
      reg_lr=0.01,  # Adam on log_alpha (descent) and the lambdas (ascent)
      warmup_steps=1000,  # the target ramps linearly over the global step
      freeze_step=-1,  # from here masks are deterministic (-1: never)
  ))
  c.mesh = ml_collections.ConfigDict(dict(data=-1, model=1))
  c.eval = ml_collections.ConfigDict(dict(
      methods="none,pumer,tome", split="test", batch_size=64,
      checkpoint="",  # a model dir; "" = the workdir's final model
      timing_repeats=5,
      timing_min_seconds=2.0,  # per method: small models need many calls
      # Retrieval crosses eval.batch_size captions with this many images
      # per forward pass.
      retrieval_image_batch=8,
  ))
  c.lock()
  return c


def load_config(path: str) -> ml_collections.ConfigDict:
  """`configs/x.py:variant` -> that file's `get_config(variant)`, for
  scripts that take a config path without absl's --config flag."""
  file, _, arg = path.partition(":")
  spec = importlib.util.spec_from_file_location("config_file", file)
  if spec is None or not pathlib.Path(file).is_file():
    raise FileNotFoundError(f"config file {file!r} does not exist.")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)
