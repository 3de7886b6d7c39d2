"""The train state, born sharded on the mesh, and the frozen teacher.

`init_sharded_state` creates every parameter directly on its devices
(`jax.jit(init, out_shardings=...)`), with shardings from the parameters'
logical axis names; the optimiser state gets the shardings of the
parameters it tracks. EfficientVLM's gate state travels beside the
parameters in `TrainState.gates` with its own optimiser state, replicated.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from pumer_jax.models import saved
from pumer_jax.reduce import ReduceConfig
from pumer_jax.train import sharding


@flax.struct.dataclass
class TrainState:
  """What a training run checkpoints.

  Attributes:
    step: the number of steps taken.
    params: the model's parameters.
    opt_state: their optimiser state.
    rng: the run's base key (each step folds in its number).
    gates: EfficientVLM's gate state (`log_alpha`, `lambdas`), else None.
    gates_opt_state: the gates' optimiser state, else None.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  gates: Any = None
  gates_opt_state: Any = None


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation,
    example: dict[str, Any], rng: jax.Array, *,
    gates: Any = None, gate_tx: optax.GradientTransformation | None = None,
) -> TrainState:
  """Initial state (boxed params: logical axis metadata kept for sharding)."""
  init_rng, state_rng = jax.random.split(rng)
  params = model.init(init_rng, **example)["params"]
  opt_state = tx.init(nn.meta.unbox(params))
  gates_opt_state = gate_tx.init(gates) if gate_tx is not None else None
  return TrainState(jnp.zeros((), jnp.int32), params, opt_state, state_rng,
                    gates, gates_opt_state)


def state_shardings(abstract: TrainState, tx, mesh) -> TrainState:
  """Shardings for every leaf: params by logical axes, optimiser alike,
  everything else (step, rng, the small gate state) replicated."""
  param_sh = sharding.logical_shardings(abstract.params, mesh)
  rep = sharding.replicated(mesh)
  # multi_transform leaves MaskedNode placeholders for other groups' params.
  masked = lambda x: isinstance(x, optax.MaskedNode)
  opt_sh = optax.tree_map_params(
      tx, lambda p, s: p if masked(p) else s, abstract.opt_state, param_sh,
      transform_non_params=lambda _: rep, is_leaf=masked,
  )
  replicate = lambda tree: jax.tree.map(lambda _: rep, tree)
  return TrainState(rep, param_sh, opt_sh, rep, replicate(abstract.gates),
                    replicate(abstract.gates_opt_state))


def init_sharded_state(model, tx, example, rng, mesh, *, gates=None,
                       gate_tx=None) -> tuple[TrainState, TrainState]:
  """Creates the state already sharded: parameters are born on devices.

  Returns (state with unboxed params, its shardings).
  """
  create = lambda r: create_train_state(model, tx, example, r, gates=gates,
                                        gate_tx=gate_tx)
  shardings = state_shardings(jax.eval_shape(create, rng), tx, mesh)

  def init(r):
    state = create(r)
    return state.replace(params=nn.meta.unbox(state.params))

  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    state = jax.jit(init, out_shardings=shardings)(rng)
  return state, shardings


def overwrite_params(state: TrainState, saved_params: Any, source: str
                     ) -> TrainState:
  """`state` with every parameter `saved_params` has (same shape) copied in,
  sharded as before; the others keep their fresh values and are listed."""
  saved_flat = flax.traverse_util.flatten_dict(saved_params)
  mine = flax.traverse_util.flatten_dict(state.params)
  kept, fresh = {}, []
  for key, value in mine.items():
    if key in saved_flat and saved_flat[key].shape == value.shape:
      kept[key] = jax.device_put(saved_flat[key].astype(value.dtype),
                                 value.sharding)
    else:
      kept[key] = value
      fresh.append("/".join(key))
  if fresh:
    print(f"init from {source}: {len(fresh)} parameters keep their "
          f"fresh init: {fresh[:6]}{' ...' if len(fresh) > 6 else ''}")
  return state.replace(params=flax.traverse_util.unflatten_dict(kept))


def load_teacher(source: str, mesh, example: dict[str, Any]):
  """The frozen, unreduced teacher at `source` and its sharded parameters.

  Returns `(teacher, params, shardings)`, or three Nones for no source.
  """
  if not source:
    return None, None, None
  teacher, variables = saved.load_model(source,
                                        reduce=ReduceConfig(method="none"))
  abstract = jax.eval_shape(
      lambda: teacher.init(jax.random.PRNGKey(0), **example))["params"]
  shardings = sharding.logical_shardings(abstract, mesh)
  try:
    params = jax.device_put(variables["params"], shardings)
  except ValueError as e:
    raise ValueError(
        f"teacher {source} does not fit the model its config describes "
        f"({e}).") from e
  return teacher, params, shardings
