"""Wall-clock timing of jitted functions, as the benchmarks measure it.

Compile first (excluded), warm up, then time each call to completion with
`block_until_ready`; report the median and the spread, never the minimum
alone, since shared machines drift.
"""

from __future__ import annotations

import dataclasses
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
