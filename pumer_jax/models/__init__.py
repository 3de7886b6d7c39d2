"""Flax models: ViLT (single stream), METER (two streams); reducers wired
into their layers."""

from pumer_jax.models.meter import Meter, MeterConfig, MeterModel
from pumer_jax.models.reducers import ReduceConfig
from pumer_jax.models.vilt import Vilt, ViltConfig, ViltModel
