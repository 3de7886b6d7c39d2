"""The phases of a benchmark run, each over every method on one device.

`memory_phase` (FLOPs, compiled memory, device peak of the inference
forward), `protocol_phase` (the autograd and train-step programs of
`protocols`, and the train step's throughput), `throughput_phase` (the
inference batch grown to the best throughput) and `crossover_phase`
(throughput at small batches, every method at one batch before the next,
to find where a reducer starts to pay) and `breakdown_phase` (each
reduction layer's time by part, from a profiler trace: `breakdown`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from tqdm import tqdm

from pumer_jax.bench import breakdown, protocols
from pumer_jax.bench.measure import (
    Timing,
    compiled_flops,
    compiled_memory,
    compiled_temp_bytes,
    time_jitted,
    throughput_summary,
)
from pumer_jax.bench.presets import ModelConfig
from pumer_jax.bench.programs import (
    ParamStore,
    _example_inputs,
    compile_forward,
    device_peak_bytes,
    is_out_of_memory,
)
from pumer_jax.models import ReduceConfig


@dataclasses.dataclass
class MethodRun:
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
  autograd_memory: int | None = None  # the autograd protocol's bytes
  residuals: int | None = None  # of which kept for the backward pass
  train_memory: int | None = None
  train: dict[str, Any] | None = None  # the train step's throughput
  curve: dict[int, float] = dataclasses.field(default_factory=dict)
  breakdown: list[dict[str, Any]] | None = None  # per reduction layer


class Runner:
  """Holds the shared weights and inputs of one run on one device."""

  def __init__(self, model: ModelConfig, text_len: int,
               image_size: tuple[int, int], seed: int, timing: dict,
               debug_checks: bool = False):
    self.model, self.text_len, self.seed = model, text_len, seed
    self.image_size = image_size  # the unreduced methods' (H, W)
    self.params = ParamStore(model, text_len, image_size, seed)
    self.timing = timing
    self.debug_checks = debug_checks

  def inputs(self, batch: int, hw: tuple[int, int]):
    return _example_inputs(batch, self.text_len, hw, self.model.vocab_size,
                           self.seed)

  def specs(self, m: MethodRun, batch: int) -> tuple[Any, ...]:
    return (jax.ShapeDtypeStruct((batch, self.text_len), jnp.int32),
            jax.ShapeDtypeStruct((batch, self.text_len), jnp.int32),
            jax.ShapeDtypeStruct((batch, *m.image_size, 3), jnp.float32))

  def compile(self, m: MethodRun, batch: int):
    """Compiles for input shapes only: no input arrays exist yet."""
    return compile_forward(self.model, m.reduce, self.params.get(m.reduce),
                           self.specs(m, batch),
                           debug_checks=self.debug_checks)

  def run_once(self, m: MethodRun, compiled, inputs) -> None:
    out = jax.block_until_ready(compiled(self.params.get(m.reduce), *inputs))
    if self.debug_checks:
      out[0].throw()  # the checkify error of the input checks

  def time(self, m: MethodRun, compiled, inputs) -> Timing:
    return time_jitted(compiled, self.params.get(m.reduce), *inputs,
                       **self.timing)


def memory_phase(runner: Runner, methods: list[MethodRun], batch: int,
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


def throughput_phase(runner: Runner, m: MethodRun, sizes: list[int],
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


def protocol_phase(runner: Runner, methods: list[MethodRun], batch: int,
                   autograd: bool, train_step: bool, bar: tqdm) -> None:
  """With `autograd`, the autograd protocol's bytes at `batch`; with
  `train_step`, the train step's bytes and its throughput (timed like
  inference)."""
  for m in methods:
    params = runner.params.get(m.reduce)
    if autograd:
      bar.set_description(f"autograd {m.name} @ {batch}")
      compiled = protocols.compile_autograd_forward(
          runner.model, m.reduce, params, runner.specs(m, batch))
      m.autograd_memory = compiled_memory(compiled)
      m.residuals = protocols.residual_bytes(compiled)
      del compiled
    if train_step:
      bar.set_description(f"train step {m.name} @ {batch}")
      compiled, init_opt = protocols.compile_train_step(
          runner.model, m.reduce, params, runner.specs(m, batch))
      m.train_memory = compiled_memory(compiled)
      loop = protocols.TrainLoop(compiled, init_opt, params,
                                 runner.inputs(batch, m.image_size),
                                 runner.seed)
      m.train = throughput_summary(batch, time_jitted(loop, **runner.timing))
      del compiled, loop
    bar.update()


def crossover_phase(runner: Runner, methods: list[MethodRun],
                    batches: Sequence[int], bar: tqdm) -> None:
  """Inference throughput of every method at each of `batches`, all
  methods at one batch before the next (so a drift hits them alike)."""
  for batch in sorted(batches):
    for m in methods:
      bar.set_description(f"crossover {m.name} @ {batch}")
      compiled = runner.compile(m, batch)
      timing = runner.time(m, compiled, runner.inputs(batch, m.image_size))
      m.curve[batch] = batch / timing.median_s
      bar.update()


def breakdown_phase(runner: Runner, methods: list[MethodRun], batch: int,
                    bar: tqdm, calls: int = 5) -> None:
  """Each method's reduction layers by part at `batch` (`breakdown.measure`:
  profiled on single-threaded XLA:CPU with YNNPACK in a child process)."""
  bar.set_description(f"time breakdown @ {batch}")
  rows = breakdown.measure(runner.model, {m.name: m.reduce for m in methods},
                           runner.text_len, runner.image_size, batch,
                           calls, runner.seed)
  for m in methods:
    m.breakdown = rows[m.name]
    bar.update()


def crossover_batch(curve: dict[int, float], base: dict[int, float]
                    ) -> int | None:
  """The smallest batch at which the method is faster than unreduced and
  stays so at every larger measured batch (None: never)."""
  found = None
  for batch in sorted(curve, reverse=True):
    if curve[batch] <= base[batch]:
      break
    found = batch
  return found
