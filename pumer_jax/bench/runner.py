"""`run_benchmark`: every method of a preset measured in one run, one device.

Per method: the forward pass compiled, warmed up and timed at growing batch
sizes until out of memory (or the cap), the best throughput kept; compiled
FLOPs and memory; peak device memory at one common batch; every figure
also as a ratio to the unreduced model measured in the same run. With
`peer="hf"`, Hugging Face's PyTorch ViLT is timed on the same shapes.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
from tqdm import tqdm

from pumer_jax.bench.hf_peer import run_hf_peer
from pumer_jax.bench.measure import (
    Timing,
    compiled_flops,
    compiled_memory,
    compiled_temp_bytes,
    cpu_threads,
    time_jitted,
    throughput_summary,
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
from pumer_jax.bench.programs import (
    ParamStore,
    _example_inputs,
    compile_forward,
    device_peak_bytes,
    is_out_of_memory,
)
from pumer_jax.models import ReduceConfig, ViltConfig, architecture_of

@dataclasses.dataclass
class _Method:
  """Everything measured for one method, filled in phase by phase."""

  name: str
  reduce: ReduceConfig
  image_size: tuple[int, int]
  compiled: Any = None  # at the memory batch; dropped after use
  flops: float | None = None
  memory_estimate: int | None = None
  activation: int | None = None  # temporaries at the activation batch
  peak_memory: int | None = None
  trials: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  best: dict[str, Any] | None = None


class _Runner:
  """Holds the shared weights and inputs of one run on one device."""

  def __init__(self, model: ModelConfig, text_len: int,
               image_size: tuple[int, int], seed: int, timing: dict,
               debug_checks: bool = False):
    self.model, self.text_len, self.seed = model, text_len, seed
    self.params = ParamStore(model, text_len, image_size, seed)
    self.timing = timing
    self.debug_checks = debug_checks

  def inputs(self, batch: int, hw: tuple[int, int]):
    return _example_inputs(batch, self.text_len, hw, self.model.vocab_size,
                           self.seed)

  def compile(self, m: _Method, batch: int):
    """Compiles for input shapes only: no input arrays exist yet."""
    specs = (jax.ShapeDtypeStruct((batch, self.text_len), jnp.int32),
             jax.ShapeDtypeStruct((batch, self.text_len), jnp.int32),
             jax.ShapeDtypeStruct((batch, *m.image_size, 3), jnp.float32))
    return compile_forward(self.model, m.reduce, self.params.get(m.reduce),
                           specs, debug_checks=self.debug_checks)

  def run_once(self, m: _Method, compiled, inputs) -> None:
    out = jax.block_until_ready(compiled(self.params.get(m.reduce), *inputs))
    if self.debug_checks:
      out[0].throw()  # the checkify error of the input checks

  def time(self, m: _Method, compiled, inputs) -> Timing:
    return time_jitted(compiled, self.params.get(m.reduce), *inputs,
                       **self.timing)


def _memory_phase(runner: _Runner, methods: list[_Method], batch: int,
                  activation_batch: int, device: jax.Device, bar: tqdm
                  ) -> None:
  """FLOPs, compiled memory estimate and device peak at the common batch;
  compiled activation bytes at `activation_batch` (compiled, never run).

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
    m.activation = compiled_temp_bytes(
        m.compiled if activation_batch == batch
        else runner.compile(m, activation_batch))
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
                   max_batch=max_batch, memory_batch=memory_batch))
  if max_batch < batch_start:
    raise ValueError(
        f"max_batch={max_batch} is below batch_start={batch_start}.")
  # Each method is fed its own resolution (SmRes its smaller one), so a
  # config's pinned `input_size` would reject SmRes's images.
  model_config = model_config.replace(input_size=None)
  sizes = (sorted(batches) if batches
           else batch_sizes(batch_start, batch_step, max_batch))

  runner = _Runner(model_config, text_len, hw, seed,
                   dict(warmup=warmup, repeats=repeats,
                        min_seconds=min_seconds), debug_checks)
  measured = [_Method(name, r, method_image_size(r, hw))
              for name, r in methods.items()]
  with tqdm(total=2 * len(measured), disable=not progress,
            file=sys.stderr) as bar:
    _memory_phase(runner, measured, memory_batch, activation_batch, device,
                  bar)
    for m in measured:
      _throughput_phase(runner, m, sizes, memory_batch, bar)
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
      results=results,
      peer=peer_report,
  )
