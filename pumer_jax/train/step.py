"""The jitted train step, shared by every trainer.

A trainer supplies its loss, `loss_fn(params, gates, batch, teacher_params,
rng, step) -> (loss, metrics)`; the step differentiates it, applies the
parameters' optimiser, and, when the state holds gates (EfficientVLM), the
gates' own optimiser and their post-update projection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from pumer_jax.train import sharding
from pumer_jax.train.state import TrainState

LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def make_train_step(
    loss_fn: LossFn, tx: optax.GradientTransformation, *,
    gate_tx: optax.GradientTransformation | None = None,
    project_gates: Callable[[Any], Any] = lambda gates: gates,
):
  """The step `(state, batch, teacher_params) -> (state, metrics)`.

  `metrics` holds what `loss_fn` reports plus `grad_norm` (of the model's
  parameters). The step's key is the state's base key folded with the step
  number, so a resumed run draws the same dropout as an uninterrupted one.
  """

  def train_step(state: TrainState, batch, teacher_params):
    rng = jax.random.fold_in(state.rng, state.step)
    (grads, gate_grads), metrics = jax.grad(
        loss_fn, argnums=(0, 1), has_aux=True)(
            state.params, state.gates, batch, teacher_params, rng, state.step)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    gates, gates_opt_state = state.gates, state.gates_opt_state
    if gate_tx is not None:
      gate_updates, gates_opt_state = gate_tx.update(
          gate_grads, gates_opt_state, gates)
      gates = project_gates(optax.apply_updates(gates, gate_updates))
    metrics["grad_norm"] = optax.global_norm(grads)
    return state.replace(step=state.step + 1, params=params,
                         opt_state=opt_state, gates=gates,
                         gates_opt_state=gates_opt_state), metrics

  return train_step


def jit_train_step(train_step, shardings: TrainState, mesh,
                   teacher_shardings=None):
  """jit with donated state and explicit in/out shardings."""
  batch_sh = sharding.batch_sharding(mesh)
  rep = sharding.replicated(mesh)
  return jax.jit(
      train_step,
      in_shardings=(shardings, batch_sh, teacher_shardings),
      out_shardings=(shardings, rep),
      donate_argnums=(0,),
  )
