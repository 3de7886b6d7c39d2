"""Device mesh and shardings: parameters by logical axis names, data by batch.

The mesh has axes ('data', 'model'). Parameters carry logical axis names
(`nn.with_logical_partitioning`); `LOGICAL_RULES` maps them onto the mesh.
Activations are constrained on the batch axis only, so token gathers stay
on-device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

# Logical axis -> mesh axis. Vocabulary tables stay replicated: small
# vocabularies (the embedded dataset's) need not divide the model axis.
LOGICAL_RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", "data"),
    ("embed", None),
    ("mlp", "model"),
    ("joined_kv", "model"),
    ("vocab", None),
)


def make_mesh(data: int = -1, model: int = 1) -> Mesh:
  """A ('data', 'model') mesh over every device (all hosts); -1 infers one."""
  count = jax.device_count()
  if data == -1 and model == -1:
    raise ValueError("mesh.data and mesh.model cannot both be -1.")
  if data == -1:
    data = count // model
  if model == -1:
    model = count // data
  if data < 1 or model < 1 or data * model != count:
    raise ValueError(
        f"mesh.data={data} x mesh.model={model} must equal the {count} "
        "available devices; set --config.mesh.data / --config.mesh.model.")
  return jax.make_mesh((data, model), ("data", "model"),
                       axis_types=(AxisType.Auto, AxisType.Auto))


def logical_shardings(
    boxed_tree: Any, mesh: Mesh,
    rules: Sequence[tuple[str, str | None]] = LOGICAL_RULES,
) -> Any:
  """NamedShardings for a tree of (abstract) logically partitioned values."""
  specs = nn.get_partition_spec(boxed_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, rules)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data', the rest replicated."""
  return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each process's slice of the batch into global arrays."""
  sharding = batch_sharding(mesh)

  def put(local: np.ndarray) -> jax.Array:
    if jax.process_count() == 1:
      return jax.device_put(local, sharding)
    global_shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
    return jax.make_array_from_process_local_data(sharding, local,
                                                  global_shape)

  return {k: put(np.asarray(v)) for k, v in batch.items()}
