"""The EfficientVLM trainer: distil a half-depth student, then prune it.

`config.stage` picks the stage (DESIGN 4.5, 4.6):
- `distill`: the student is the teacher (`distill.teacher`) with every
  module's depth halved, initialised from its odd layers; the loss weighs
  task, logits KL, attention MSE and hidden-state MSE by `distill.*`.
- `prune`: the stage-1 student (`init_from`) gets one hard-concrete gate
  per head and FFN unit; the same KD continues, plus the Lagrangian that
  drives the expected sparsity to `prune.target`. The gates live in
  `TrainState.gates` with their own optimiser (descent on `log_alpha`,
  ascent on the lambdas); they are written to `WORKDIR/gates/` beside the
  model, for `python -m pumer_jax.compress.finalize` to slice.

  train_and_evaluate(config, workdir)

reads top to bottom as the fine-tuning trainer does.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from pumer_jax.compress import distill as kd
from pumer_jax.compress import gates as gates_lib
from pumer_jax.compress import hard_concrete
from pumer_jax.compress.finalize import GATES_DIR
from pumer_jax.models import ARCHITECTURES, saved
from pumer_jax.models.inputs import model_inputs
from pumer_jax.train import checkpoints, loop, losses, optim
from pumer_jax.train.finetune import task_term
from pumer_jax.train.state import (
    TrainState,
    init_sharded_state,
    load_teacher,
    overwrite_params,
)
from pumer_jax.train.step import jit_train_step, make_train_step


def make_loss_fn(model: nn.Module, config: ml_collections.ConfigDict,
                 teacher: nn.Module, gate_layout=None):
  """`loss_fn(params, gates, batch, teacher_params, rng, step)`.

  Loss = sum over `distill.{task, logits, attn, hidden}` of weight * term,
  plus, when pruning (`gate_layout`), the Lagrangian of the expected
  sparsity against the ramped target, with masks sampled from the gates.
  """
  distill, prune = config.distill, config.prune
  task = task_term(config.task, config.loss.vqa_reduction)
  maps = dict(output_attentions=distill.attn > 0,
              output_hidden_states=distill.hidden > 0)

  def loss_fn(params, gates, batch, teacher_params, rng, step):
    if config.task == "retrieval":
      batch = losses.itm_pairs(batch)
    drop_rng, gumbel_rng, gate_rng = jax.random.split(rng, 3)
    masks = None
    if gates is not None:
      frozen = (step >= prune.freeze_step) & (prune.freeze_step >= 0)
      masks = gates_lib.masks(gate_rng, gates["log_alpha"], frozen)
    out = model.apply({"params": params}, **model_inputs(batch), train=True,
                      rngs={"dropout": drop_rng, "gumbel": gumbel_rng},
                      gates=masks, debug_checks=config.debug_checks, **maps)
    t_out = teacher.apply({"params": teacher_params}, **model_inputs(batch),
                          train=False, **maps)
    terms = {"task": task(out, batch),
             "logits": kd.logits_kl(out["logits"], t_out["logits"],
                                    distill.temperature),
             **kd.distill_losses(out, t_out)}
    means = {name: losses.masked_mean(value, batch["valid"])
             for name, value in terms.items()}
    loss = sum(distill[name] * mean for name, mean in means.items())
    metrics = {("task_loss" if name == "task" else f"kd_{name}"): mean
               for name, mean in means.items()}
    if gates is not None:
      sparsity = gate_layout.expected_sparsity(gates["log_alpha"])
      target = gates_lib.target_at(step, prune.target, prune.warmup_steps)
      lagrangian = gates_lib.lagrangian(sparsity, target, gates["lambdas"])
      loss = loss + lagrangian
      metrics.update(expected_sparsity=sparsity, target_sparsity=target,
                     lagrangian=lagrangian, lambda1=gates["lambdas"][0],
                     lambda2=gates["lambdas"][1])
    metrics["loss"] = loss
    return loss, metrics

  return loss_fn


def project_gates(gates):
  """After each update: `log_alpha` clipped to its range, lambdas as are."""
  return {**gates, "log_alpha": jax.tree.map(hard_concrete.clip_log_alpha,
                                             gates["log_alpha"])}


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
    train_iter: Iterator[dict[str, np.ndarray]] | None = None,
) -> TrainState:
  """Runs the EfficientVLM stage `config.stage` in `workdir`, resuming."""
  if config.stage not in kd.STAGES[1:]:
    raise ValueError(
        f"stage={config.stage!r}: the EfficientVLM trainer runs stage "
        "distill or prune (configs/efficientvlm.py:stage=...).")
  if not config.distill.teacher:
    raise ValueError(
        f"stage={config.stage!r} distils from --config.distill.teacher=DIR "
        "(the unreduced, full-depth model); it is empty.")
  workdir = pathlib.Path(workdir)
  if jax.process_index() == 0:
    checkpoints.claim_workdir(workdir, config)

  # ----- Model (from the checkpoints), mesh, data ---------------------------
  model_config, start_params = kd.stage_model(config)
  arch = ARCHITECTURES[config.arch]
  model = arch.module(model_config)
  example = arch.example_inputs(model_config, 1, config.data.text_len)
  mesh = loop.make_mesh(config)
  train_iter = loop.train_iterator(config, train_iter)

  # ----- Sharded state, gates when pruning ----------------------------------
  abstract_params = nn.meta.unbox(jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), **example))["params"])
  tx = optim.make_optimizer(config.optim, config.total_steps, abstract_params)
  gate_layout, gates, gate_tx = None, None, None
  if config.stage == "prune":
    gate_layout = gates_lib.GateLayout.build(model_config, abstract_params)
    gates = gates_lib.init_state(gate_layout)
    gate_tx = gates_lib.gate_optimizer(config.prune.reg_lr)
  state, shardings = init_sharded_state(
      model, tx, example, jax.random.PRNGKey(config.seed), mesh,
      gates=gates, gate_tx=gate_tx)

  # ----- Teacher and step ---------------------------------------------------
  teacher, teacher_params, teacher_sh = load_teacher(
      config.distill.teacher, mesh, example)
  step_fn = jit_train_step(
      make_train_step(make_loss_fn(model, config, teacher, gate_layout), tx,
                      gate_tx=gate_tx, project_gates=project_gates),
      shardings, mesh, teacher_sh, debug_checks=config.debug_checks)

  # ----- Resume, or start from the stage's parameters -----------------------
  manager = checkpoints.checkpoint_manager(workdir, config)
  restored = checkpoints.resume(manager, state, train_iter, workdir)
  state = (restored if restored is not None else
           overwrite_params(state, start_params, f"stage {config.stage}"))

  # ----- Loop, then export the model and its gates --------------------------
  state = loop.run_loop(config, workdir, state, step_fn, train_iter, mesh,
                        manager, teacher_params)
  saved.save_model(workdir / "model", model_config, state.params,
                   overwrite=True)
  if state.gates is not None:
    gates_lib.save_gate_state(workdir / GATES_DIR, state.gates)
  return state
