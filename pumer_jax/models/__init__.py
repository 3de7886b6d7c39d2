"""Flax models: ViLT (single stream); reducers wired into their layers."""

from pumer_jax.models.reducers import ReduceConfig
from pumer_jax.models.vilt import Vilt, ViltConfig, ViltModel
