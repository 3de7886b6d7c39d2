"""What the benchmark runs: presets (paper shapes, tiny CPU models) and the
checks that fail fast, before any compilation.

A preset fixes the model's sizes, input shapes, batch growth and the
methods (reducer settings) to compare; `check_setup` validates a run's
arguments and every method's schedule on its input shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pumer_jax.models import MeterConfig, ReduceConfig, ViltConfig

ModelConfig = ViltConfig | MeterConfig
SCHEMA_VERSION = 3
PEERS = ("hf",)
DEFAULT_OUT = "benchmarks/results"
# Batch cap when --max_batch is not given: growing to OOM on a CPU host only
# swaps, so there the first batch is the only one; accelerators grow to 64.
DEFAULT_MAX_BATCH = {"cpu": None, "gpu": 64, "tpu": 64}

# ----------------------------------------------------------------------------
# Presets: paper-sized ViLT-B/32 shapes, and a tiny model for CPU smoke runs.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Preset:
  """One benchmark setting: model, input shapes, methods, batch protocol.

  `sweep_grid` maps ReduceConfig fields to the values `--sweep` crosses on
  top of the `pumer` method (see `bench.pareto.grid_methods`).
  `activation_batch` is the large batch whose compiled temporaries (the
  activations, which at small batches hide under the weights) are reported.
  """

  model: ModelConfig
  text_len: int
  image_size: tuple[int, int]
  methods: dict[str, ReduceConfig]
  batch_start: int
  batch_step: int
  sweep_grid: dict[str, tuple[Any, ...]]
  activation_batch: int = 0  # 0: batch_start


def _paper_methods(layers: tuple[int, ...], tome_r: int,
                   ) -> dict[str, ReduceConfig]:
  """The methods at the papers' ViLT settings (DESIGN 4.3, 4.4).

  `tome_r` is picked per schedule so ToMe's FLOPs come close to PuMer's
  (ToMe at its r removes tokens in every layer; PuMer only in `layers`).
  """
  return {
      "none": ReduceConfig(),
      "pumer": ReduceConfig(method="pumer", layers=layers, prune_ratio=0.1,
                            image_merge_ratio=0.3, text_merge_ratio=0.2),
      "tome": ReduceConfig(method="tome", tome_r=tome_r),
      "dynamicvit": ReduceConfig(method="dynamicvit", layers=(3, 6, 9),
                                 keep_ratios=(0.7, 0.49, 0.343)),
      "smres": ReduceConfig(method="smres", smres_size=(288, 288)),
      # EViT's reference placement (drop_loc 3, 6, 9) and keep rate.
      "evit": ReduceConfig(method="evit", layers=(3, 6, 9), keep_rate=0.7),
  }


_PAPER_GRID = {
    "prune_ratio": (0.1, 0.2, 0.3),
    "image_merge_ratio": (0.2, 0.3, 0.5),
    "layers": ((2, 5, 8), (2, 4, 6, 8), (0, 2, 4, 6, 8)),
}

def _meter_methods(layers: tuple[int, ...], prune: float, merge: float,
                   tome_r: int) -> dict[str, ReduceConfig]:
  """The methods at the paper's METER settings (DESIGN 4.3), in the fusion
  blocks; ToMe, DynamicViT and EViT reduce the image stream there too.
  PuMer's merges clamp at the matching's cap, as its reference code."""
  return {
      "none": ReduceConfig(),
      "pumer": ReduceConfig(method="pumer", layers=layers, prune_ratio=prune,
                            image_merge_ratio=merge, text_merge_ratio=0.2,
                            clamp_merge=True),
      "tome": ReduceConfig(method="tome", layers=layers, tome_r=tome_r),
      "dynamicvit": ReduceConfig(method="dynamicvit", layers=(1, 2, 3),
                                 keep_ratios=(0.7, 0.49, 0.343)),
      "smres": ReduceConfig(method="smres", smres_size=(288, 288)),
      "evit": ReduceConfig(method="evit", layers=layers, keep_rate=0.7),
  }


_METER_GRID = {
    "prune_ratio": (0.1, 0.2, 0.3),
    "image_merge_ratio": (0.2, 0.3, 0.5),
    "layers": ((0, 1, 2, 3), (1, 2, 3), (0, 2, 4)),
}

PRESETS: dict[str, Preset] = {
    # SNLI-VE: 3-way head, text padded to 40, PuMer in layers (2, 4, 6, 8).
    # ToMe r=16: FLOP ratio 0.479 vs PuMer's 0.485 (r=15: 0.507); see
    # benchmarks/README.md, "ToMe's r".
    "vilt_ve": Preset(
        model=ViltConfig(head="ve", num_labels=3),
        text_len=40, image_size=(384, 384),
        methods=_paper_methods((2, 4, 6, 8), tome_r=16),
        batch_start=32, batch_step=8, sweep_grid=_PAPER_GRID,
        activation_batch=256,
    ),
    # VQAv2: 3129-way head, text padded to 32, PuMer in layers (2, 5, 8).
    # ToMe r=13: FLOP ratio 0.552 vs PuMer's 0.545 (r=12: 0.586).
    "vilt_vqa": Preset(
        model=ViltConfig(head="vqa", num_labels=3129),
        text_len=32, image_size=(384, 384),
        methods=_paper_methods((2, 5, 8), tome_r=13),
        batch_start=32, batch_step=8, sweep_grid=_PAPER_GRID,
        activation_batch=256,
    ),
    # METER-CLIP16-RoBERTa-B at 384x384 (577 image tokens incl. CLS), VQAv2
    # head and text 32; PuMer p=0.2 m=0.2 t=0.2 in fusion blocks 0-3.
    "meter_vqa": Preset(
        model=MeterConfig(head="vqa", num_labels=3129),
        text_len=32, image_size=(384, 384),
        methods=_meter_methods((0, 1, 2, 3), 0.2, 0.2, tome_r=115),
        batch_start=16, batch_step=8, sweep_grid=_METER_GRID,
        activation_batch=64,
    ),
    # SNLI-VE: PuMer p=0.3 m=0.5 t=0.2 in fusion blocks 0-3, text 40.
    "meter_ve": Preset(
        model=MeterConfig(head="ve", num_labels=3),
        text_len=40, image_size=(384, 384),
        methods=_meter_methods((0, 1, 2, 3), 0.3, 0.5, tome_r=144),
        batch_start=16, batch_step=8, sweep_grid=_METER_GRID,
        activation_batch=64,
    ),
    # Seconds on a laptop CPU: a two-stream model of width 32, 2 blocks.
    "meter_tiny": Preset(
        model=MeterConfig(
            vision_hidden_size=32, vision_num_layers=1, vision_num_heads=2,
            vision_intermediate_size=64, image_size=64, patch_size=16,
            vocab_size=100, text_hidden_size=32, text_num_layers=1,
            text_num_heads=2, text_intermediate_size=64,
            max_position_embeddings=18, hidden_size=32, num_fusion_layers=2,
            num_attention_heads=4, intermediate_size=64, num_labels=5),
        text_len=8, image_size=(64, 64),
        methods={
            "none": ReduceConfig(),
            "pumer": ReduceConfig(method="pumer", layers=(0, 1),
                                  prune_ratio=0.2, image_merge_ratio=0.2,
                                  text_merge_ratio=0.2),
            "tome": ReduceConfig(method="tome", layers=(0, 1), tome_r=3),
            "dynamicvit": ReduceConfig(method="dynamicvit", layers=(0, 1),
                                       keep_ratios=(0.7, 0.5)),
            "smres": ReduceConfig(method="smres", smres_size=(48, 48)),
            "evit": ReduceConfig(method="evit", layers=(0, 1), keep_rate=0.6),
        },
        batch_start=4, batch_step=4, activation_batch=16,
        sweep_grid={"prune_ratio": (0.1, 0.2), "layers": ((0,), (0, 1))},
    ),
    # Seconds on a laptop CPU: hidden 32, 4 layers, 64x64 images (17 image
    # tokens incl. CLS), text 8.
    "tiny": Preset(
        model=ViltConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=4,
            num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=16, image_size=64, patch_size=16,
            num_labels=5),
        text_len=8, image_size=(64, 64),
        methods={
            "none": ReduceConfig(),
            "pumer": ReduceConfig(method="pumer", layers=(1, 2),
                                  prune_ratio=0.1, image_merge_ratio=0.3,
                                  text_merge_ratio=0.2),
            "tome": ReduceConfig(method="tome", tome_r=3),
            "dynamicvit": ReduceConfig(method="dynamicvit", layers=(1, 2),
                                       keep_ratios=(0.7, 0.49)),
            "smres": ReduceConfig(method="smres", smres_size=(48, 48)),
            "evit": ReduceConfig(method="evit", layers=(1, 2), keep_rate=0.6),
        },
        batch_start=2, batch_step=2, activation_batch=32,
        sweep_grid={"prune_ratio": (0.1, 0.3), "layers": ((1,), (1, 2))},
    ),
}
# Validation.


def select_methods(available: Mapping[str, ReduceConfig],
                   names: Sequence[str]) -> dict[str, ReduceConfig]:
  """The named methods of a preset, in the order given; unknown is an error."""
  unknown = [n for n in names if n not in available]
  if unknown:
    raise ValueError(
        f"unknown method(s) {unknown}; choose from {list(available)}.")
  if not names:
    raise ValueError("no methods given; e.g. --methods none,pumer.")
  return {name: available[name] for name in dict.fromkeys(names)}


def _as_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
  if isinstance(image_size, int):
    return image_size, image_size
  hw = tuple(int(v) for v in image_size)
  if len(hw) != 2:
    raise ValueError(f"image_size={image_size!r} must be an int or (H, W).")
  return hw


def method_image_size(reduce: ReduceConfig,
                      image_size: tuple[int, int]) -> tuple[int, int]:
  """The resolution a method is fed: one acting on the input (SmRes) gets
  its images at its size directly, as its input pipeline would resize them
  (the model's resize is then a no-op and not timed)."""
  return _as_hw(reduce.input_size(image_size))


def check_setup(model: ModelConfig, methods: Mapping[str, ReduceConfig],
                text_len: int, image_size: tuple[int, int],
                batches: Mapping[str, int | None]) -> None:
  """Fails fast, before any compilation, with the field that is wrong."""
  for name, value in batches.items():
    if value is not None and (not isinstance(value, int) or value <= 0):
      raise ValueError(f"{name}={value!r} must be a positive int.")
  if not 1 <= text_len <= model.max_text_len:
    raise ValueError(
        f"text_len={text_len} must be in [1, {model.max_text_len}] (the "
        "model's position table).")
  patch = model.patch_size
  for name, reduce in methods.items():
    if not isinstance(reduce, ReduceConfig):
      raise ValueError(f"method {name!r}: {reduce!r} is not a ReduceConfig.")
    try:
      hw = method_image_size(reduce, image_size)
      if min(hw) < patch or hw[0] % patch or hw[1] % patch:
        raise ValueError(f"its input size {hw} must be a positive multiple "
                         f"of patch_size={patch}.")
      schedule(model, reduce, text_len, image_size)  # bad ratios / layers
    except ValueError as error:
      raise ValueError(f"method {name!r}: {error}") from error
  if methods.get("none", ReduceConfig()) != ReduceConfig():
    raise ValueError("the method named 'none' must have reduce.method='none'"
                     " (it is the baseline every speedup is relative to).")


def schedule(model: ModelConfig, reduce: ReduceConfig, text_len: int,
             hw: tuple[int, int]):
  """The method's static token schedule on input images of size `hw`."""
  image_len = (hw[0] // model.patch_size) * (hw[1] // model.patch_size) + 1
  return model.replace(reduce=reduce).schedule(image_len, text_len)


def batch_sizes(start: int, step: int, cap: int) -> list[int]:
  """start, start + step, ... up to and including `cap` (at least `start`)."""
  return list(range(start, max(start, cap) + 1, step))