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
from jax.experimental import checkify

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
                   teacher_shardings=None, *, debug_checks: bool = False):
  """jit with donated state and explicit in/out shardings.

  With `debug_checks` the step is `checkify`-ed (the loss passes
  `debug_checks=True` to the model) and every call raises the first failed
  input check; the host then waits on each step.
  """
  batch_sh = sharding.batch_sharding(mesh)
  rep = sharding.replicated(mesh)
  jit = lambda fn, out: jax.jit(
      fn, in_shardings=(shardings, batch_sh, teacher_shardings),
      out_shardings=out, donate_argnums=(0,))
  if not debug_checks:
    return jit(train_step, (shardings, rep))
  checked = jit(checkify.checkify(train_step, errors=checkify.user_checks),
                (rep, (shardings, rep)))

  def step(state, batch, teacher_params):
    err, out = checked(state, batch, teacher_params)
    err.throw()
    return out

  return step
