"""`run_benchmark`: every method of a preset measured in one run, one device.

Per method: the forward pass compiled, warmed up and timed at growing batch
sizes until out of memory (or the cap), the best throughput kept; compiled
FLOPs and memory; peak device memory at one common batch; every figure
also as a ratio to the unreduced model measured in the same run. With
`peer="hf"`, Hugging Face's PyTorch ViLT is timed on the same shapes.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import flax
import jax
from tqdm import tqdm

from pumer_jax.bench.hf_peer import run_hf_peer
from pumer_jax.bench.measure import cpu_threads
from pumer_jax.bench.phases import (
    MethodRun,
    Runner,
    breakdown_phase,
    crossover_batch,
    crossover_phase,
    memory_phase,
    protocol_phase,
    throughput_phase,
)
from pumer_jax.bench.presets import (
    DEFAULT_MAX_BATCH,
    PEERS,
    SCHEMA_VERSION,
    ModelConfig,
    _as_hw,
    batch_sizes,
    check_setup,
    method_image_size,
    schedule,
)
from pumer_jax.models import ReduceConfig, ViltConfig, architecture_of

def _ratio(a: float | None, b: float | None) -> float | None:
  return None if a is None or b is None or b == 0 else a / b


def reduce_dict(reduce: ReduceConfig) -> dict[str, Any]:
  """`to_dict` with JSON's types (lists, not tuples), so a report read back
  equals the one written, and `ReduceConfig.from_mapping` accepts it."""
  return json.loads(json.dumps(reduce.to_dict()))


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


def _result(m: MethodRun, base: MethodRun, model: ModelConfig, text_len: int,
            memory_batch: int) -> dict[str, Any]:
  """One method's row of the JSON `results` list (see README for fields)."""
  best = m.best
  flops = None if m.flops is None else m.flops / memory_batch
  base_flops = None if base.flops is None else base.flops / memory_batch
  speedup = best["throughput"] / base.best["throughput"]
  flop_ratio = _ratio(flops, base_flops)
  flop_speedup = _ratio(1.0, flop_ratio)
  sched = schedule(model, m.reduce, text_len, m.image_size)
  autograd_ratio = _ratio(m.autograd_memory, base.autograd_memory)
  train_ratio = _ratio(m.train_memory, base.train_memory)
  train_throughput = m.train["throughput"] if m.train else None
  base_train = base.train["throughput"] if base.train else None
  estimate_ratio = _ratio(m.memory_estimate, base.memory_estimate)
  memory_ratio = _ratio(m.peak_memory, base.peak_memory)
  activation_ratio = _ratio(m.activation, base.activation)
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
      activation_bytes=m.activation,
      activation_reduction=(
          None if activation_ratio is None else 1.0 - activation_ratio),
      tokens_per_layer=[sched.tokens_in(l) for l in range(sched.depth + 1)],
      autograd_memory_bytes=m.autograd_memory,
      autograd_memory_reduction=(
          None if autograd_ratio is None else 1.0 - autograd_ratio),
      autograd_residual_bytes=m.residuals,
      train_memory_bytes=m.train_memory,
      train_memory_reduction=None if train_ratio is None else 1.0 - train_ratio,
      train_throughput=train_throughput,
      train_spread=m.train["spread"] if m.train else None,
      train_speedup=_ratio(train_throughput, base_train),
      crossover=_crossover(m, base),
      time_breakdown=m.breakdown,
  )


def _crossover(m: MethodRun, base: MethodRun) -> dict[str, Any] | None:
  """Throughput and speedup per small batch, and where the method pays."""
  if not m.curve:
    return None
  return dict(
      batches=sorted(m.curve),
      throughput=[m.curve[b] for b in sorted(m.curve)],
      speedup=[m.curve[b] / base.curve[b] for b in sorted(m.curve)],
      crossover_batch=None if m is base else crossover_batch(m.curve,
                                                             base.curve),
      baseline=m is base)


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
    activation_batch: int | None = None,
    repeats: int = 10,
    warmup: int = 2,
    min_seconds: float = 0.0,
    peer: str | None = None,
    peer_compile: bool = True,
    seed: int = 0,
    progress: bool = True,
    preset: str | None = None,
    debug_checks: bool = False,
    batches: Sequence[int] | None = None,
    autograd: bool = True,
    train_step: bool = False,
    crossover_batches: Sequence[int] | None = None,
    time_breakdown: bool = False,
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
    activation_batch: the batch whose compiled temporaries (activations)
      are reported (default `memory_batch`); compiled only, never run.
    memory_batch: the common batch for FLOPs and memory (default
      `batch_start`).
    repeats, warmup, min_seconds: per timing, as `time_jitted`.
    peer: None or 'hf' (Hugging Face ViLT in PyTorch, unreduced, timed at
      the batch where Flax 'none' was fastest); peer_compile: also try
      `torch.compile`.
    seed: weights and inputs. progress: a tqdm bar over the run.
    preset: recorded in the report.
    debug_checks: compile the input-value checks in (`checkify`), so the
      timings include their cost.
    batches: the batch sizes to grow through, instead of `batch_start` by
      `batch_step` (e.g. 64, 256, 1024 on a GPU: a few compiles, not 120).
    autograd: also compile the autograd protocol's forward at `memory_batch`
      (`protocols`: the paper's memory protocol).
    train_step: also compile and time one AdamW train step at
      `memory_batch` (its memory and examples/s).
    crossover_batches: also time inference at these batches (e.g. 1, 2, 4,
      8), every method at one batch before the next, and report the
      smallest batch from which each reducer is faster than unreduced.
    time_breakdown: also profile the inference forward at `memory_batch`
      and split each reduction layer's time into attention, MLP and the
      reducer's scoring, matching and gathers/scatters (`breakdown`; the
      unreduced row splits the same layers).

  Returns:
    The report dict; `SCHEMA_KEYS`/`RESULT_KEYS` list its fields.
  """
  hw = _as_hw(image_size)
  device = jax.devices()[0]
  if max_batch is None:
    max_batch = max(DEFAULT_MAX_BATCH.get(device.platform) or 0, batch_start)
  memory_batch = batch_start if memory_batch is None else memory_batch
  activation_batch = activation_batch or memory_batch
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
                   max_batch=max_batch, memory_batch=memory_batch,
                   **{f"crossover_batches[{i}]": b
                      for i, b in enumerate(crossover_batches or ())}))
  if max_batch < batch_start:
    raise ValueError(
        f"max_batch={max_batch} is below batch_start={batch_start}.")
  # Each method is fed its own resolution (SmRes its smaller one), so a
  # config's pinned `input_size` would reject SmRes's images.
  model_config = model_config.replace(input_size=None)
  sizes = (sorted(batches) if batches
           else batch_sizes(batch_start, batch_step, max_batch))

  runner = Runner(model_config, text_len, hw, seed,
                   dict(warmup=warmup, repeats=repeats,
                        min_seconds=min_seconds), debug_checks)
  measured = [MethodRun(name, r, method_image_size(r, hw))
              for name, r in methods.items()]
  steps = (2 + (autograd or train_step) + len(crossover_batches or ())
           + time_breakdown) * len(measured)
  with tqdm(total=steps, disable=not progress,
            file=sys.stderr) as bar:
    memory_phase(runner, measured, memory_batch, activation_batch, device,
                 bar)
    if autograd or train_step:
      protocol_phase(runner, measured, memory_batch, autograd, train_step,
                     bar)
    for m in measured:
      throughput_phase(runner, m, sizes, memory_batch, bar)
    if crossover_batches:
      crossover_phase(runner, measured, crossover_batches, bar)
    if time_breakdown:
      breakdown_phase(runner, measured, memory_batch, bar)
  base = next(m for m in measured if m.reduce == ReduceConfig())
  results = [_result(m, base, model_config, text_len, memory_batch)
             for m in measured]

  peer_report = None
  if peer == "hf":
    best = base.best["batch"]
    none_inputs = runner.inputs(best, base.image_size)
    none_compiled = runner.compile(base, best)
    peer_report = run_hf_peer(
        model_config, text_len=text_len, image_size=hw,
        batch=best, platform=device.platform, repeats=repeats,
        warmup=warmup, min_seconds=min_seconds, compile=peer_compile,
        seed=seed, flax_call=lambda: runner.run_once(base, none_compiled,
                                                     none_inputs))
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
      xla_flags=os.environ.get("XLA_FLAGS", ""),
      device=_device_info(device),
      dtype=model_config.dtype,
      model=_model_info(model_config),
      image_size=list(hw),
      text_len=text_len,
      batch=dict(start=batch_start, step=batch_step, max=max_batch,
                 memory=memory_batch, activation=activation_batch),
      timing=dict(repeats=repeats, warmup=warmup, min_seconds=min_seconds,
                  debug_checks=debug_checks),
      protocols=dict(autograd=autograd, train_step=train_step,
                     crossover_batches=sorted(crossover_batches or ()),
                     time_breakdown=time_breakdown),
      results=results,
      peer=peer_report,
  )
