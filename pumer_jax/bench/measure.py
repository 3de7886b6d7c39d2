"""What a jitted program costs: wall-clock time and the compiler's figures.

Timing compiles first (excluded), warms up, then times each call to
completion with `block_until_ready`; it reports the median and the spread,
never the minimum alone, since shared machines drift. FLOPs and memory come
from the compiled program's own analysis. The benchmark and eval.py share
these, so both report the same numbers.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


@dataclasses.dataclass(frozen=True)
class Timing:
  median_s: float
  p10_s: float
  p90_s: float
  repeats: int

  def as_dict(self) -> dict[str, float]:
    return dataclasses.asdict(self)


def time_jitted(
    fn: Callable[..., Any], *args, warmup: int = 2, repeats: int = 10,
    min_seconds: float = 0.0,
) -> Timing:
  """Times `fn(*args)` (already jitted) per call.

  Runs at least `repeats` calls and, if `min_seconds` > 0, keeps going
  until that much time has been measured, so fast functions get enough
  samples to be stable.
  """
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  samples: list[float] = []
  while len(samples) < repeats or sum(samples) < min_seconds:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    samples.append(time.perf_counter() - start)
  # "inclusive" interpolates within the samples; the default extrapolates
  # past them for small counts (a negative p10 from two samples).
  deciles = (statistics.quantiles(samples, n=10, method="inclusive")
             if len(samples) > 1 else samples * 9)
  return Timing(statistics.median(samples), deciles[0], deciles[-1],
                len(samples))


def compiled_flops(compiled) -> float | None:
  """Total FLOPs of a compiled program; `cost_analysis()` is a dict, or a
  list of per-device dicts in some JAX versions, or absent."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # some backends do not implement it
    return None
  if isinstance(cost, (list, tuple)):  # one dict per device: sum them
    if not cost or any("flops" not in c for c in cost):
      return None
    return float(sum(c["flops"] for c in cost))
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"])


def _memory_analysis(compiled):
  """`compiled.memory_analysis()`, or None where the backend lacks it."""
  try:
    return compiled.memory_analysis()
  except Exception:  # some backends do not implement it
    return None


def compiled_temp_bytes(compiled) -> int | None:
  """The compiled program's temporary buffers: its activations, on every
  backend, without running it (None where memory_analysis is missing)."""
  stats = _memory_analysis(compiled)
  return None if stats is None else int(stats.temp_size_in_bytes)


def compiled_output_bytes(compiled) -> int | None:
  """The compiled program's output buffers (None where memory_analysis is
  missing)."""
  stats = _memory_analysis(compiled)
  return None if stats is None else int(stats.output_size_in_bytes)


def compiled_memory(compiled) -> int | None:
  """Backend-independent memory estimate: temp + argument + output bytes of
  the compiled program (aliased bytes counted once)."""
  stats = _memory_analysis(compiled)
  if stats is None:
    return None
  return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes
             + stats.output_size_in_bytes - stats.alias_size_in_bytes)


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


def cpu_model() -> str:
  """The host CPU's model name (`lscpu`), to print beside CPU figures."""
  import platform  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True,
                         check=False).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                if line.startswith("Model name"))
  except (OSError, StopIteration):
    return platform.processor() or "unknown CPU"
