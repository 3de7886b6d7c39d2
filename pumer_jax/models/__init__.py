"""Flax models: ViLT (single stream), METER (two streams); reducers wired
into their layers.

`ARCHITECTURES` names each model family once, for the code that builds a
model from a config (`train_lib`, `checkpoint`, `bench`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pumer_jax.models import meter, vilt
from pumer_jax.models.meter import Meter, MeterConfig, MeterModel
from pumer_jax.models.reducers import ReduceConfig
from pumer_jax.models.vilt import Vilt, ViltConfig, ViltModel


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
