"""Inference throughput, FLOPs and memory of ViLT or METER with each reducer.

The paper's protocol (DESIGN 8), in one run on one device: for every method
jit-compile the inference forward pass, warm up, time it with
`block_until_ready` (median of repeats, p10-p90 spread), growing the batch
from `batch_start` by `batch_step` until XLA runs out of memory or
`max_batch`, and keep the best throughput. FLOPs per example come from the
compiled program's `cost_analysis()`, peak memory from
`device.memory_stats()` at one common batch (`memory_batch`), and every
method is compared with the unreduced model (`none`) measured in the same
run. Weights are random: throughput needs no trained weights.

  python -m pumer_jax.bench --preset vilt_vqa                 # paper shapes
  python -m pumer_jax.bench --preset meter_vqa                # METER-B/16, 384
  python -m pumer_jax.bench --preset tiny --peer hf           # CPU smoke run
  python -m pumer_jax.bench --preset vilt_vqa --sweep --eval_results r.json

`run_benchmark` is the Python API the CLI (and a later `--config` flag)
calls; `pumer_jax.pareto` runs the sweep, `pumer_jax.bench_peer` the
Hugging Face PyTorch peer. See benchmarks/README.md for every column.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from pumer_jax.cost import compiled_flops, compiled_memory
from pumer_jax.models import (
    ARCHITECTURES,
    MeterConfig,
    ReduceConfig,
    ViltConfig,
    architecture_of,
)
from pumer_jax.models.layers import INIT_STD
from pumer_jax.reduce.schedule import METHODS
from pumer_jax.timing import Timing, time_jitted

ModelConfig = ViltConfig | MeterConfig
SCHEMA_VERSION = 1
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
  top of the `pumer` method (see `pumer_jax.pareto.grid_methods`).
  """

  model: ModelConfig
  text_len: int
  image_size: tuple[int, int]
  methods: dict[str, ReduceConfig]
  batch_start: int
  batch_step: int
  sweep_grid: dict[str, tuple[Any, ...]]


def _paper_methods(layers: tuple[int, ...], tome_r: int,
                   ) -> dict[str, ReduceConfig]:
  """The five methods at the paper's ViLT settings (DESIGN 4.3, 4.4).

  `tome_r` is picked per schedule so ToMe's FLOPs come close to PuMer's
  (ToMe at its r removes tokens in every layer; PuMer only in `layers`).
  """
  return {
      "none": ReduceConfig(),
      "pumer": ReduceConfig(method="pumer", layers=layers, prune_ratio=0.1,
                            image_merge_ratio=0.3, text_merge_ratio=0.2),
      "tome": ReduceConfig(method="tome", tome_r=tome_r),
      "dynamicvit": ReduceConfig(method="dynamicvit", layers=(2, 5, 8),
                                 keep_ratios=(0.7, 0.49, 0.343)),
      "smres": ReduceConfig(method="smres", smres_size=(288, 288)),
  }


_PAPER_GRID = {
    "prune_ratio": (0.1, 0.2, 0.3),
    "image_merge_ratio": (0.2, 0.3, 0.5),
    "layers": ((2, 5, 8), (2, 4, 6, 8), (0, 2, 4, 6, 8)),
}

def _meter_methods(layers: tuple[int, ...], prune: float, merge: float,
                   tome_r: int) -> dict[str, ReduceConfig]:
  """The five methods at the paper's METER settings (DESIGN 4.3), in the
  fusion blocks; ToMe and DynamicViT reduce the image stream there too.
  PuMer's merges clamp at the matching's cap, as its reference code."""
  return {
      "none": ReduceConfig(),
      "pumer": ReduceConfig(method="pumer", layers=layers, prune_ratio=prune,
                            image_merge_ratio=merge, text_merge_ratio=0.2,
                            clamp_merge=True),
      "tome": ReduceConfig(method="tome", layers=layers, tome_r=tome_r),
      "dynamicvit": ReduceConfig(method="dynamicvit", layers=(0, 1, 2),
                                 keep_ratios=(0.7, 0.49, 0.343)),
      "smres": ReduceConfig(method="smres", smres_size=(288, 288)),
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
    ),
    # VQAv2: 3129-way head, text padded to 32, PuMer in layers (2, 5, 8).
    # ToMe r=13: FLOP ratio 0.552 vs PuMer's 0.545 (r=12: 0.586).
    "vilt_vqa": Preset(
        model=ViltConfig(head="vqa", num_labels=3129),
        text_len=32, image_size=(384, 384),
        methods=_paper_methods((2, 5, 8), tome_r=13),
        batch_start=32, batch_step=8, sweep_grid=_PAPER_GRID,
    ),
    # METER-CLIP16-RoBERTa-B at 384x384 (577 image tokens incl. CLS), VQAv2
    # head and text 32; PuMer p=0.2 m=0.2 t=0.2 in fusion blocks 0-3.
    "meter_vqa": Preset(
        model=MeterConfig(head="vqa", num_labels=3129),
        text_len=32, image_size=(384, 384),
        methods=_meter_methods((0, 1, 2, 3), 0.2, 0.2, tome_r=115),
        batch_start=16, batch_step=8, sweep_grid=_METER_GRID,
    ),
    # SNLI-VE: PuMer p=0.3 m=0.5 t=0.2 in fusion blocks 0-3, text 40.
    "meter_ve": Preset(
        model=MeterConfig(head="ve", num_labels=3),
        text_len=40, image_size=(384, 384),
        methods=_meter_methods((0, 1, 2, 3), 0.3, 0.5, tome_r=144),
        batch_start=16, batch_step=8, sweep_grid=_METER_GRID,
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
        },
        batch_start=4, batch_step=4,
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
        },
        batch_start=2, batch_step=2,
        sweep_grid={"prune_ratio": (0.1, 0.3), "layers": ((1,), (1, 2))},
    ),
}

# ----------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------


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
  """The resolution a method is fed: SmRes gets its smaller images directly,
  as its input pipeline would resize them (the model's resize is then a
  no-op and not timed)."""
  if reduce.method == "smres" and reduce.smres_size is not None:
    return _as_hw(reduce.smres_size)
  return image_size


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
    if reduce.method not in METHODS:
      raise ValueError(
          f"method {name!r}: reduce.method={reduce.method!r} is not one of "
          f"{METHODS}.")
    if reduce.method == "smres" and reduce.smres_size is None:
      raise ValueError(f"method {name!r}: smres needs reduce.smres_size.")
    hw = method_image_size(reduce, image_size)
    if min(hw) < patch or hw[0] % patch or hw[1] % patch:
      what = "smres_size" if reduce.method == "smres" else "image_size"
      raise ValueError(
          f"method {name!r}: {what}={hw} must be a positive multiple of "
          f"patch_size={patch}.")
    schedule(model, reduce, text_len, hw)  # raises on bad ratios / layers
  if methods.get("none", ReduceConfig()).method != "none":
    raise ValueError("the method named 'none' must have reduce.method='none'"
                     " (it is the baseline every speedup is relative to).")


def schedule(model: ModelConfig, reduce: ReduceConfig, text_len: int,
             hw: tuple[int, int]):
  """The method's static token schedule on this input shape."""
  image_len = (hw[0] // model.patch_size) * (hw[1] // model.patch_size) + 1
  return model.replace(reduce=reduce).schedule(image_len, text_len)


def batch_sizes(start: int, step: int, cap: int) -> list[int]:
  """start, start + step, ... up to and including `cap` (at least `start`)."""
  return list(range(start, max(start, cap) + 1, step))

# ----------------------------------------------------------------------------
# Parameters, inputs, compilation
# ----------------------------------------------------------------------------


def _example_inputs(batch: int, text_len: int, hw: tuple[int, int],
                    vocab_size: int, seed: int) -> tuple[jax.Array, ...]:
  """Random (input_ids, attention_mask, NHWC pixels); text half to fully
  padded-out, so PuMer scores real text rows as it would on real data."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(max(1, text_len // 2), text_len + 1, size=batch)
  mask = (np.arange(text_len)[None] < lengths[:, None]).astype(np.int32)
  ids = rng.integers(1, vocab_size, (batch, text_len)).astype(np.int32)
  pixels = rng.normal(size=(batch, *hw, 3)).astype(np.float32)
  return tuple(jax.device_put(a) for a in (ids, mask, pixels))


def _cast_floats(params: Any, dtype: str) -> Any:
  """Inference weights in the compute dtype (bfloat16 halves their bytes)."""
  if dtype == "float32":
    return params
  target = jnp.dtype(dtype)
  return jax.tree.map(
      lambda a: a.astype(target) if jnp.issubdtype(a.dtype, jnp.floating)
      else a, params)


def abstract_params(model: ModelConfig, reduce: ReduceConfig, text_len: int,
                    hw: tuple[int, int]) -> dict[str, Any]:
  """The parameter tree of `model` with `reduce`, as ShapeDtypeStructs.

  A trace, no compilation: compiling ViLT-B's init costs more than timing a
  small model. DynamicViT adds `{vilt,meter}/keep_predictor_{i}`.
  """
  module = ARCHITECTURES[architecture_of(model)].module
  vilt = module(model.replace(reduce=reduce, dtype="float32"))
  spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype)
  abstract = jax.eval_shape(
      vilt.init, jax.random.PRNGKey(0),
      input_ids=spec((1, text_len), jnp.int32),
      attention_mask=spec((1, text_len), jnp.int32),
      pixel_values=spec((1, *hw, 3), jnp.float32))
  return flax.linen.meta.unbox(abstract)["params"]


def fill_random(abstract: Any, seed: int) -> Any:
  """Random values for an abstract tree: LayerNorm scales 1, biases 0, the
  rest N(0, 0.02) as the model's init. Throughput does not depend on them."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf: jax.ShapeDtypeStruct) -> jax.Array:
    name = getattr(path[-1], "key", "")
    if name == "scale":
      value = np.ones(leaf.shape, np.float32)
    elif name == "bias":
      value = np.zeros(leaf.shape, np.float32)
    else:
      value = rng.standard_normal(leaf.shape, np.float32) * INIT_STD
    return jax.device_put(value.astype(leaf.dtype))

  return jax.tree_util.tree_map_with_path(fill, abstract)


class ParamStore:
  """The shared unreduced weights, plus each DynamicViT config's predictors.

  One copy of the backbone on the device for every method, so memory
  measurements compare activations, not duplicated weights.
  """

  def __init__(self, model: ModelConfig, text_len: int,
               image_size: tuple[int, int], seed: int):
    self._model, self._text_len = model, text_len
    self._image_size, self._seed = image_size, seed
    base = abstract_params(model, ReduceConfig(), text_len, image_size)
    self._base = _cast_floats(fill_random(base, seed), model.dtype)
    self._extra: dict[ReduceConfig, dict[str, Any]] = {}

  def get(self, reduce: ReduceConfig) -> dict[str, Any]:
    """The parameters the model with this reducer expects."""
    if reduce.method != "dynamicvit":
      return self._base
    backbone = architecture_of(self._model)  # "vilt" or "meter"
    if reduce not in self._extra:
      full = abstract_params(self._model, reduce, self._text_len,
                             self._image_size)
      predictors = {k: v for k, v in full[backbone].items()
                    if k.startswith("keep_predictor")}
      self._extra[reduce] = _cast_floats(
          fill_random(predictors, self._seed + 1), self._model.dtype)
    return {**self._base,
            backbone: {**self._base[backbone], **self._extra[reduce]}}


def compile_forward(model: ModelConfig, reduce: ReduceConfig, params: Any,
                    inputs: Sequence[jax.Array | jax.ShapeDtypeStruct]):
  """AOT-compiles the inference forward pass for the inputs' exact shapes
  (input_ids, attention_mask, NHWC pixel_values; arrays or shape specs)."""
  vilt = ARCHITECTURES[architecture_of(model)].module(
      model.replace(reduce=reduce))

  def forward(params, input_ids, attention_mask, pixel_values):
    out = vilt.apply({"params": params}, input_ids=input_ids,
                     attention_mask=attention_mask,
                     pixel_values=pixel_values, train=False)
    return out["logits"] if "logits" in out else out["pooled"]

  return jax.jit(forward).lower(params, *inputs).compile()


def device_peak_bytes(device: jax.Device) -> int | None:
  """The device allocator's high-water mark, or None (CPU has no stats)."""
  stats = getattr(device, "memory_stats", lambda: None)()
  if not stats or "peak_bytes_in_use" not in stats:
    return None
  return int(stats["peak_bytes_in_use"])


def is_out_of_memory(err: BaseException) -> bool:
  """XLA's RESOURCE_EXHAUSTED (compile or run time), or host MemoryError."""
  return isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in str(err)

# ----------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Method:
  """Everything measured for one method, filled in phase by phase."""

  name: str
  reduce: ReduceConfig
  image_size: tuple[int, int]
  compiled: Any = None  # at the memory batch; dropped after use
  flops: float | None = None
  memory_estimate: int | None = None
  peak_memory: int | None = None
  trials: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  best: dict[str, Any] | None = None


def _rate(batch: int, seconds: float) -> float | None:
  return batch / seconds if seconds > 0 else None


def throughput_summary(batch: int, timing: Timing) -> dict[str, Any]:
  """Examples/s at the median time, and the p10-p90 spread in both units."""
  return dict(
      batch=batch,
      throughput=batch / timing.median_s,
      spread=dict(throughput_p10=_rate(batch, timing.p90_s),
                  throughput_p90=_rate(batch, timing.p10_s),
                  **timing.as_dict()),
  )


def cpu_threads() -> int:
  """CPU cores this process may use: what XLA's CPU client sizes its pool to."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # macOS has no affinity API
    return os.cpu_count() or 1


class _Runner:
  """Holds the shared weights and inputs of one run on one device."""

  def __init__(self, model: ModelConfig, text_len: int,
               image_size: tuple[int, int], seed: int, timing: dict):
    self.model, self.text_len, self.seed = model, text_len, seed
    self.params = ParamStore(model, text_len, image_size, seed)
    self.timing = timing

  def inputs(self, batch: int, hw: tuple[int, int]):
    return _example_inputs(batch, self.text_len, hw, self.model.vocab_size,
                           self.seed)

  def compile(self, m: _Method, batch: int):
    """Compiles for input shapes only: no input arrays exist yet."""
    specs = (jax.ShapeDtypeStruct((batch, self.text_len), jnp.int32),
             jax.ShapeDtypeStruct((batch, self.text_len), jnp.int32),
             jax.ShapeDtypeStruct((batch, *m.image_size, 3), jnp.float32))
    return compile_forward(self.model, m.reduce, self.params.get(m.reduce),
                           specs)

  def run_once(self, m: _Method, compiled, inputs) -> None:
    jax.block_until_ready(compiled(self.params.get(m.reduce), *inputs))

  def time(self, m: _Method, compiled, inputs) -> Timing:
    return time_jitted(compiled, self.params.get(m.reduce), *inputs,
                       **self.timing)


def _memory_phase(runner: _Runner, methods: list[_Method], batch: int,
                  device: jax.Device, bar: tqdm) -> None:
  """FLOPs, compiled memory estimate and device peak at the common batch.

  JAX cannot reset the device's peak counter, so programs run in ascending
  order of their compiled estimate, before any larger batch: each method's
  reading is then the high-water mark its own program set.
  """
  for m in methods:
    bar.set_description(f"compile {m.name} @ {batch}")
    try:
      m.compiled = runner.compile(m, batch)
    except Exception as err:
      if is_out_of_memory(err):
        raise RuntimeError(
            f"method {m.name!r} does not compile at memory_batch={batch}: "
            f"out of memory; lower --memory_batch.") from err
      raise
    m.flops = compiled_flops(m.compiled)
    m.memory_estimate = compiled_memory(m.compiled)
  for m in sorted(methods, key=lambda m: m.memory_estimate or 0):
    bar.set_description(f"memory {m.name} @ {batch}")
    inputs = runner.inputs(batch, m.image_size)  # only this method's
    try:
      runner.run_once(m, m.compiled, inputs)
    except Exception as err:
      if is_out_of_memory(err):
        raise RuntimeError(
            f"method {m.name!r} runs out of memory at memory_batch={batch}; "
            f"lower --memory_batch.") from err
      raise
    del inputs
    m.peak_memory = device_peak_bytes(device)
    bar.update()


def _throughput_phase(runner: _Runner, m: _Method, sizes: list[int],
                      memory_batch: int, bar: tqdm) -> None:
  """Grows the batch until out of memory or the cap; keeps the best."""
  for batch in sizes:
    bar.set_description(f"time {m.name} @ {batch}")
    try:
      if batch == memory_batch and m.compiled is not None:
        compiled = m.compiled
      else:
        compiled = runner.compile(m, batch)
      timing = runner.time(m, compiled, runner.inputs(batch, m.image_size))
    except Exception as err:
      if not is_out_of_memory(err):
        raise
      m.trials.append(dict(batch=batch, throughput=None, oom=True))
      break
    trial = throughput_summary(batch, timing)
    m.trials.append(dict(batch=batch, throughput=trial["throughput"],
                         oom=False))
    if m.best is None or trial["throughput"] > m.best["throughput"]:
      m.best = trial
  m.compiled = None
  if m.best is None:
    raise RuntimeError(
        f"method {m.name!r} ran out of memory at the first batch "
        f"{sizes[0]}; lower --batch_start.")
  bar.update()


def _ratio(a: float | None, b: float | None) -> float | None:
  return None if a is None or b is None or b == 0 else a / b


def reduce_dict(reduce: ReduceConfig) -> dict[str, Any]:
  """`asdict` with JSON's types (lists, not tuples), so a report read back
  equals the one written, and `ReduceConfig.from_mapping` accepts it."""
  return json.loads(json.dumps(dataclasses.asdict(reduce)))


def _model_info(config: ModelConfig) -> dict[str, Any]:
  """The architecture fields a report names (all of them, for METER)."""
  info = dict(arch=architecture_of(config), hidden_size=config.hidden_size,
              num_attention_heads=config.num_attention_heads,
              patch_size=config.patch_size, head=config.head,
              num_labels=config.num_labels)
  if isinstance(config, ViltConfig):
    info["num_hidden_layers"] = config.num_hidden_layers
  else:
    info.update(vision_num_layers=config.vision_num_layers,
                vision_hidden_size=config.vision_hidden_size,
                text_num_layers=config.text_num_layers,
                num_fusion_layers=config.num_fusion_layers)
  return info


def _result(m: _Method, base: _Method, model: ModelConfig, text_len: int,
            memory_batch: int) -> dict[str, Any]:
  """One method's row of the JSON `results` list (see README for fields)."""
  best = m.best
  flops = None if m.flops is None else m.flops / memory_batch
  base_flops = None if base.flops is None else base.flops / memory_batch
  speedup = best["throughput"] / base.best["throughput"]
  flop_ratio = _ratio(flops, base_flops)
  flop_speedup = _ratio(1.0, flop_ratio)
  sched = schedule(model, m.reduce, text_len, m.image_size)
  estimate_ratio = _ratio(m.memory_estimate, base.memory_estimate)
  memory_ratio = _ratio(m.peak_memory, base.peak_memory)
  return dict(
      name=m.name,
      method=m.reduce.method,
      reduce=reduce_dict(m.reduce),
      image_size=list(m.image_size),
      batch=best["batch"],
      throughput=best["throughput"],
      spread=best["spread"],
      batch_trials=m.trials,
      speedup=speedup,
      flops_per_example=flops,
      flop_ratio=flop_ratio,
      flop_speedup=flop_speedup,
      efficiency=_ratio(speedup, flop_speedup),
      peak_memory_bytes=m.peak_memory,
      memory_reduction=None if memory_ratio is None else 1.0 - memory_ratio,
      memory_estimate_bytes=m.memory_estimate,
      memory_estimate_reduction=(
          None if estimate_ratio is None else 1.0 - estimate_ratio),
      # METER's ToMe schedule counts the image stream alone: add the text.
      tokens_per_layer=[sched.tokens_in(l) + (text_len if not sched.text_len
                                              else 0)
                        for l in range(sched.depth + 1)],
  )


def _device_info(device: jax.Device) -> dict[str, Any]:
  return dict(platform=device.platform, kind=device.device_kind,
              count=jax.device_count(), host_cpu_threads=cpu_threads())


def run_benchmark(
    model_config: ModelConfig,
    methods: Mapping[str, ReduceConfig],
    text_len: int,
    image_size: int | Sequence[int],
    *,
    batch_start: int = 32,
    batch_step: int = 8,
    max_batch: int | None = None,
    memory_batch: int | None = None,
    repeats: int = 10,
    warmup: int = 2,
    min_seconds: float = 0.0,
    peer: str | None = None,
    peer_compile: bool = True,
    seed: int = 0,
    progress: bool = True,
    preset: str | None = None,
) -> dict[str, Any]:
  """Benchmarks `methods` on one device; returns the JSON-ready report.

  Args:
    model_config: the architecture and dtype ('float32' | 'bfloat16'); its
      `reduce` is replaced by each method's.
    methods: name -> ReduceConfig. A method named 'none' (unreduced) is the
      baseline; it is added first if missing.
    text_len: padded text length; image_size: (H, W) or an int (square).
    batch_start, batch_step, max_batch: the batch grows from `batch_start`
      by `batch_step` up to `max_batch` (default: 64 on accelerators, just
      `batch_start` on CPU) or until XLA reports RESOURCE_EXHAUSTED; each
      method keeps its best throughput.
    memory_batch: the common batch for FLOPs and memory (default
      `batch_start`).
    repeats, warmup, min_seconds: per timing, as `time_jitted`.
    peer: None or 'hf' (Hugging Face ViLT in PyTorch, unreduced, timed at
      the batch where Flax 'none' was fastest); peer_compile: also try
      `torch.compile`.
    seed: weights and inputs. progress: a tqdm bar over the run.
    preset: recorded in the report.

  Returns:
    The report dict; `SCHEMA_KEYS`/`RESULT_KEYS` list its fields.
  """
  hw = _as_hw(image_size)
  device = jax.devices()[0]
  if max_batch is None:
    max_batch = max(DEFAULT_MAX_BATCH.get(device.platform) or 0, batch_start)
  memory_batch = batch_start if memory_batch is None else memory_batch
  for name, value in (("repeats", repeats), ("warmup", warmup)):
    if not isinstance(value, int) or value < (1 if name == "repeats" else 0):
      raise ValueError(f"{name}={value!r} must be an int >= "
                       f"{1 if name == 'repeats' else 0}.")
  if peer is not None and peer not in PEERS:
    raise ValueError(f"peer={peer!r} must be None or one of {PEERS}.")
  if peer is not None and not isinstance(model_config, ViltConfig):
    raise ValueError(
        "--peer hf times Hugging Face ViLT; METER has no Hugging Face port "
        "to compare with. Drop --peer for METER presets.")
  methods = dict(methods)
  if "none" not in methods:
    methods = {"none": ReduceConfig(), **methods}
  check_setup(model_config, methods, text_len, hw,
              dict(batch_start=batch_start, batch_step=batch_step,
                   max_batch=max_batch, memory_batch=memory_batch))
  if max_batch < batch_start:
    raise ValueError(
        f"max_batch={max_batch} is below batch_start={batch_start}.")
  # Each method is fed its own resolution (SmRes its smaller one), so a
  # config's pinned `input_size` would reject SmRes's images.
  model_config = model_config.replace(input_size=None)
  sizes = batch_sizes(batch_start, batch_step, max_batch)

  runner = _Runner(model_config, text_len, hw, seed,
                   dict(warmup=warmup, repeats=repeats,
                        min_seconds=min_seconds))
  measured = [_Method(name, r, method_image_size(r, hw))
              for name, r in methods.items()]
  with tqdm(total=2 * len(measured), disable=not progress,
            file=sys.stderr) as bar:
    _memory_phase(runner, measured, memory_batch, device, bar)
    for m in measured:
      _throughput_phase(runner, m, sizes, memory_batch, bar)
  base = next(m for m in measured if m.name == "none")
  results = [_result(m, base, model_config, text_len, memory_batch)
             for m in measured]

  peer_report = None
  if peer == "hf":
    from pumer_jax.bench_peer import run_hf_peer
    peer_report = run_hf_peer(
        model_config, text_len=text_len, image_size=hw,
        batch=base.best["batch"], platform=device.platform, repeats=repeats,
        warmup=warmup, min_seconds=min_seconds, compile=peer_compile,
        seed=seed)
    flax_none = base.best["throughput"]
    for mode in ("eager", "compile"):
      peer_mode = peer_report.get(mode) or {}
      peer_report[f"flax_none_over_{mode}"] = _ratio(
          flax_none, peer_mode.get("throughput"))

  return dict(
      schema_version=SCHEMA_VERSION,
      preset=preset,
      created=datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      versions=dict(jax=jax.__version__, flax=flax.__version__),
      device=_device_info(device),
      dtype=model_config.dtype,
      model=_model_info(model_config),
      image_size=list(hw),
      text_len=text_len,
      batch=dict(start=batch_start, step=batch_step, max=max_batch,
                 memory=memory_batch),
      timing=dict(repeats=repeats, warmup=warmup, min_seconds=min_seconds),
      results=results,
      peer=peer_report,
  )


SCHEMA_KEYS = frozenset((
    "schema_version", "preset", "created", "versions", "device", "dtype",
    "model", "image_size", "text_len", "batch", "timing", "results", "peer",
))
RESULT_KEYS = frozenset((
    "name", "method", "reduce", "image_size", "batch", "throughput", "spread",
    "batch_trials", "speedup", "flops_per_example", "flop_ratio",
    "flop_speedup", "efficiency", "peak_memory_bytes", "memory_reduction",
    "memory_estimate_bytes", "memory_estimate_reduction", "tokens_per_layer",
))

# ----------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------


def _fmt(value: float | None, spec: str, scale: float = 1.0) -> str:
  return "-" if value is None else format(value * scale, spec)


def format_table(report: dict[str, Any]) -> str:
  """The report as a plain-text table, one row per method."""
  d = report["device"]
  h, w = report["image_size"]
  lines = [
      f"device {d['platform']}: {d['kind']} | dtype {report['dtype']} | "
      f"image {h}x{w} | text {report['text_len']} | batch from "
      f"{report['batch']['start']} by {report['batch']['step']} to "
      f"{report['batch']['max']}, memory at {report['batch']['memory']}",
  ]
  header = ("method", "batch", "ex/s", "p10-p90 ex/s", "speedup", "GFLOP/ex",
            "FLOP ratio", "FLOP speedup", "efficiency", "peak MiB",
            "mem red.", "est. MiB", "tokens out")
  rows = [header]
  for r in report["results"]:
    s = r["spread"]
    rows.append((
        r["name"], str(r["batch"]), _fmt(r["throughput"], ".1f"),
        f"{_fmt(s['throughput_p10'], '.1f')}-"
        f"{_fmt(s['throughput_p90'], '.1f')}",
        _fmt(r["speedup"], ".2f"), _fmt(r["flops_per_example"], ".3f", 1e-9),
        _fmt(r["flop_ratio"], ".3f"), _fmt(r["flop_speedup"], ".2f"),
        _fmt(r["efficiency"], ".2f"),
        _fmt(r["peak_memory_bytes"], ".1f", 2.0 ** -20),
        _fmt(r["memory_reduction"], ".1%"),
        _fmt(r["memory_estimate_bytes"], ".1f", 2.0 ** -20),
        str(r["tokens_per_layer"][-1]),
    ))
  widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
  for row in rows:
    lines.append("  ".join(c.rjust(wd) if i else c.ljust(wd)
                           for i, (c, wd) in enumerate(zip(row, widths))))
  peer = report.get("peer")
  if peer:
    lines.append(f"peer: {peer['name']} on {peer['device']}, batch "
                 f"{peer['batch']}, {peer['threads']} threads")
    for mode in ("eager", "compile"):
      entry = peer.get(mode)
      if entry is None:
        continue
      if "error" in entry:
        lines.append(f"  {mode}: failed ({entry['error'].splitlines()[0]})")
        continue
      ratio = peer.get(f"flax_none_over_{mode}")
      lines.append(f"  {mode}: {entry['throughput']:.1f} ex/s; Flax none / "
                   f"HF {mode} = {_fmt(ratio, '.2f')}")
  return "\n".join(lines)


def output_path(out_dir: str | pathlib.Path, kind: str, report: dict,
                suffix: str = ".json") -> pathlib.Path:
  """`{kind}_{preset}_{platform}_{dtype}{suffix}` under `out_dir`."""
  preset = report.get("preset") or "custom"
  name = f"{kind}_{preset}_{report['device']['platform']}_{report['dtype']}"
  return pathlib.Path(out_dir) / f"{name}{suffix}"


def write_json(path: pathlib.Path, data: dict[str, Any]) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(data, indent=2) + "\n")
  return path

# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m pumer_jax.bench",
      description="Throughput, FLOPs and memory of token reducers on ViLT "
                  "and METER.")
  parser.add_argument("--preset", choices=sorted(PRESETS), default="vilt_vqa")
  parser.add_argument("--methods", default=None,
                      help=f"comma-separated, from {','.join(METHODS)} "
                           "(default: all the preset defines)")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"),
                      default="float32")
  parser.add_argument("--peer", choices=PEERS, default=None,
                      help="also time Hugging Face ViLT (PyTorch)")
  parser.add_argument("--peer_compile", action=argparse.BooleanOptionalAction,
                      default=True, help="also try torch.compile for --peer")
  parser.add_argument("--out", default=DEFAULT_OUT)
  parser.add_argument("--batch_start", type=int, default=None)
  parser.add_argument("--batch_step", type=int, default=None)
  parser.add_argument("--max_batch", type=int, default=None)
  parser.add_argument("--memory_batch", type=int, default=None)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--min_seconds", type=float, default=0.0)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--sweep", action="store_true",
                      help="ratios/layers grid -> Pareto chart (PNG + JSON)")
  parser.add_argument("--eval_results", default=None,
                      help="with --sweep: JSON list of {method, reduce, "
                           "accuracy} records to plot accuracy vs speedup")
  parser.add_argument("--no_progress", action="store_true")
  parser.add_argument("--model_dir", default=None,
                      help="time this checkpoint's architecture (e.g. a "
                           "finalized EfficientVLM model) instead of the "
                           "preset's; the preset gives shapes and methods")
  args = parser.parse_args(argv)
  if args.eval_results and not args.sweep:
    parser.error("--eval_results needs --sweep.")
  if args.sweep and args.methods:
    parser.error("--sweep measures the preset's grid (or the eval results' "
                 "configs); drop --methods.")
  return args


def checkpoint_architecture(model_dir: str) -> ModelConfig:
  """A model checkpoint's config, unreduced: throughput needs no weights."""
  from pumer_jax import checkpoint
  path = pathlib.Path(model_dir) / checkpoint.CONFIG_FILE
  if not path.is_file():
    raise FileNotFoundError(
        f"{path} is missing: --model_dir must be a model checkpoint "
        "(train.py's WORKDIR/model, convert.py's or finalize's --out).")
  config = checkpoint.config_from_dict(json.loads(path.read_text()))
  return config.replace(reduce=ReduceConfig())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  preset = PRESETS[args.preset]
  model, label, image_size = preset.model, args.preset, preset.image_size
  if args.model_dir:
    model = checkpoint_architecture(args.model_dir)
    label = f"{args.preset}_{pathlib.Path(args.model_dir).name}"
    image_size = model.input_size or image_size
  model = model.replace(dtype=args.dtype)
  kwargs = dict(
      batch_start=args.batch_start or preset.batch_start,
      batch_step=args.batch_step or preset.batch_step,
      max_batch=args.max_batch, memory_batch=args.memory_batch,
      repeats=args.repeats, warmup=args.warmup, min_seconds=args.min_seconds,
      seed=args.seed, progress=not args.no_progress, preset=label,
  )
  if args.sweep:
    from pumer_jax.pareto import run_sweep
    sweep = run_sweep(model, preset.text_len, image_size,
                      out_dir=args.out, grid_base=preset.methods["pumer"],
                      grid=preset.sweep_grid,
                      eval_results=args.eval_results, **kwargs)
    print(format_table(sweep["benchmark"]))
    print(f"wrote {sweep['files']['json']} and {sweep['files']['png']}")
    return sweep
  names = (args.methods.split(",") if args.methods else list(preset.methods))
  methods = select_methods(preset.methods, [n.strip() for n in names])
  report = run_benchmark(model, methods, preset.text_len, image_size,
                         peer=args.peer, peer_compile=args.peer_compile,
                         **kwargs)
  print(format_table(report))
  path = write_json(output_path(args.out, "bench", report), report)
  print(f"wrote {path}")
  return report


if __name__ == "__main__":
  main()
