"""The unreduced model: every token through every layer."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from pumer_jax.reduce.config import ReduceConfig, register


@register
@dataclasses.dataclass(frozen=True)
class NoReduction(ReduceConfig):
  """No reduction: the reference every speedup and accuracy is relative to."""

  method: ClassVar[str] = "none"
  label: ClassVar[str] = "none"
