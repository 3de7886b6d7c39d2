"""Flax models: ViLT (single stream), METER (two streams); reducers wired
into their layers.

`ARCHITECTURES` names each model family once, for the code that builds a
model from a config (the trainers, `models.saved`, `bench`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from pumer_jax.models import meter, vilt
from pumer_jax.models.meter import Meter, MeterConfig, MeterModel
from pumer_jax.models.vilt import Vilt, ViltConfig, ViltModel
from pumer_jax.reduce import ReduceConfig

__all__ = [
    "ARCHITECTURES", "Architecture", "Meter", "MeterConfig", "MeterModel",
    "ReduceConfig", "Vilt", "ViltConfig", "ViltModel", "architecture_of",
    "meter", "param_count", "vilt",
]


@dataclasses.dataclass(frozen=True)
class Architecture:
  """A model family: its module, config dataclass and example inputs."""

  module: type
  config: type
  example_inputs: Callable[..., dict[str, Any]]


ARCHITECTURES = {
    "vilt": Architecture(Vilt, ViltConfig, vilt.example_inputs),
    "meter": Architecture(Meter, MeterConfig, meter.example_inputs),
}


def architecture_of(config: Any) -> str:
  """The ARCHITECTURES key of a model config instance."""
  for name, arch in ARCHITECTURES.items():
    if isinstance(config, arch.config):
      return name
  raise TypeError(f"{type(config).__name__} is not a model config.")


def param_count(params: Any) -> int:
  """The number of scalars in a parameter tree."""
  return sum(x.size for x in jax.tree_util.tree_leaves(params))
