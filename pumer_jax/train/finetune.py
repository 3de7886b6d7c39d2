"""The fine-tuning trainer: a model with a reducer, optionally distilled.

Trains `config.model` with the reducer `config.reduce` on the task loss,
plus knowledge distillation from a frozen unreduced teacher when
`config.distill.teacher` names one (PuMer's recipe, DESIGN 4.5), plus the
reducer's own loss terms (DynamicViT's keep-ratio loss).

  train_and_evaluate(config, workdir)

reads top to bottom: model, mesh, data, sharded state, teacher, step,
resume or initialise, loop, export. Its pieces are top-level functions so
tests can run one step without the loop.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import pathlib
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from pumer_jax.compress import distill as kd
from pumer_jax.models import ARCHITECTURES, saved
from pumer_jax.models.inputs import model_inputs
from pumer_jax.reduce import ReduceConfig
from pumer_jax.train import checkpoints, loop, losses, optim
from pumer_jax.train.state import (
    TrainState,
    init_sharded_state,
    load_teacher,
    overwrite_params,
)
from pumer_jax.train.step import jit_train_step, make_train_step


def build_model_config(config: ml_collections.ConfigDict) -> Any:
  """The `config.arch` model config (ViltConfig, MeterConfig) from
  `config.model` and `config.reduce`; unknown keys fail (a legacy flat
  `reduce` block, another method's keys at their old defaults, is read)."""
  if config.arch not in ARCHITECTURES:
    raise ValueError(
        f"arch={config.arch!r} must be one of {sorted(ARCHITECTURES)}.")
  config_cls = ARCHITECTURES[config.arch].config
  fields = {f.name for f in dataclasses.fields(config_cls)}
  values = dict(config.model.items())
  unknown = sorted(set(values) - fields)
  if unknown:
    raise ValueError(f"config.model has unknown keys {unknown}.")
  if values.get("input_size") is not None:
    values["input_size"] = tuple(values["input_size"])
  # A run config written before each method had its own fields holds the
  # old flat reduce block: read it as saved models are read.
  values["reduce"] = saved.reduce_from_dict(dict(config.reduce.items()))
  return config_cls(**values)


def build_model(config: ml_collections.ConfigDict):
  """`(model, model_config, example inputs)` for `config`."""
  model_config = build_model_config(config)
  arch = ARCHITECTURES[config.arch]
  example = arch.example_inputs(model_config, 1, config.data.text_len)
  return arch.module(model_config), model_config, example


# ---------------------------------------------------------------------------
# Loss terms, each `(out, teacher_out, batch) -> per-example [B]`.
# ---------------------------------------------------------------------------


def task_term(task: str, vqa_reduction: str = "sum"):
  """The task's loss on the model's logits (`loss.vqa_reduction`: VQA's
  BCE summed or averaged over answers, see `losses.vqa_bce`)."""
  task_loss = losses.TASK_LOSSES[task]
  if vqa_reduction not in losses.VQA_REDUCTIONS:
    raise ValueError(f"loss.vqa_reduction={vqa_reduction!r} must be one of "
                     f"{losses.VQA_REDUCTIONS}.")
  if task == "vqa":
    task_loss = functools.partial(task_loss, reduction=vqa_reduction)
  label_key = "labels" if task == "vqa" else "label"
  return lambda out, batch: task_loss(out["logits"], batch[label_key])


def logits_kd(out, teacher_out, temperature: float) -> jax.Array:
  return kd.logits_kl(out["logits"], teacher_out["logits"], temperature)


def pooled_kd(out, teacher_out) -> jax.Array:
  """MSE of the pooled features: their shapes agree even when the student
  drops tokens, unlike any per-token hidden state."""
  return kd.hidden_mse(out["pooled"][:, None], teacher_out["pooled"][:, None])


def make_loss_fn(model: nn.Module, config: ml_collections.ConfigDict,
                 teacher: nn.Module | None = None):
  """`loss_fn(params, gates, batch, teacher_params, rng, step)`.

  Loss = distill.task * task + distill.logits * KL(teacher || student)
  + distill.hidden * pooled-feature MSE (with a teacher; without one the
  task loss alone) + the reducer's own terms, weighted as it says
  (`loss_terms`: DynamicViT's keep-ratio loss).
  """
  distill, reduce = config.distill, model.config.reduce
  if distill.attn:
    raise ValueError(
        "distill.attn is EfficientVLM's attention KD (configs/"
        "efficientvlm.py); a reducer changes the token counts, so fine-"
        "tuning distils logits (distill.logits) and pooled features "
        "(distill.hidden). Set distill.attn=0.")
  task = task_term(config.task, config.loss.vqa_reduction)
  patch_outputs, patch_terms = per_patch_losses(config, model)

  def loss_fn(params, gates, batch, teacher_params, rng, step):
    del gates, step  # fine-tuning has neither gates nor a step schedule
    if config.task == "retrieval":
      batch = losses.itm_pairs(batch)
    drop_rng, gumbel_rng = jax.random.split(rng)
    out = model.apply({"params": params}, **model_inputs(batch), train=True,
                      rngs={"dropout": drop_rng, "gumbel": gumbel_rng},
                      debug_checks=config.debug_checks, **patch_outputs)
    valid = batch["valid"]
    metrics = {"task_loss": losses.masked_mean(task(out, batch), valid)}
    loss = metrics["task_loss"] + patch_terms(out, batch, metrics)
    if teacher is not None:
      t_out = teacher.apply({"params": teacher_params},
                            **model_inputs(batch), train=False)
      metrics["kd_logits"] = losses.masked_mean(
          logits_kd(out, t_out, distill.temperature), valid)
      loss = distill.task * loss + distill.logits * metrics["kd_logits"]
      if distill.hidden:
        metrics["kd_hidden"] = losses.masked_mean(pooled_kd(out, t_out),
                                                  valid)
        loss = loss + distill.hidden * metrics["kd_hidden"]
    for name, (weight, value) in reduce.loss_terms(
        out.get("reducer_aux", ())).items():
      metrics[name] = value
      loss = loss + weight * value
    metrics["loss"] = loss
    return loss, metrics

  return loss_fn


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
    train_iter: Iterator[dict[str, np.ndarray]] | None = None,
) -> TrainState:
  """Trains `config` in `workdir`, resuming its latest checkpoint.

  `train_iter` overrides the config's data (tests pass in-memory batches).
  """
  if config.stage:
    raise ValueError(
        f"stage={config.stage!r} is an EfficientVLM stage: train it with "
        "pumer_jax.train.efficientvlm (train.py picks it from the config).")
  workdir = pathlib.Path(workdir)
  if jax.process_index() == 0:
    checkpoints.claim_workdir(workdir, config)

  # ----- Model, mesh, data --------------------------------------------------
  model, model_config, example = build_model(config)
  mesh = loop.make_mesh(config)
  train_iter = loop.train_iterator(config, train_iter)

  # ----- Sharded state ------------------------------------------------------
  abstract_params = nn.meta.unbox(jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), **example))["params"])
  tx = optim.make_optimizer(config.optim, config.total_steps, abstract_params,
                            model_config.reduce.param_name)
  state, shardings = init_sharded_state(
      model, tx, example, jax.random.PRNGKey(config.seed), mesh)

  # ----- Teacher and step ---------------------------------------------------
  teacher, teacher_params, teacher_sh = load_teacher(
      config.distill.teacher, mesh, example)
  step_fn = jit_train_step(
      make_train_step(make_loss_fn(model, config, teacher), tx), shardings,
      mesh, teacher_sh, debug_checks=config.debug_checks)

  # ----- Resume, or start from a saved model --------------------------------
  manager = checkpoints.checkpoint_manager(workdir, config)
  restored = checkpoints.resume(manager, state, train_iter, workdir)
  if restored is not None:
    state = restored
  elif config.init_from:
    _, variables = saved.load_model(config.init_from)
    state = overwrite_params(state, variables["params"], config.init_from)

  # ----- Loop, then export --------------------------------------------------
  state = loop.run_loop(config, workdir, state, step_fn, train_iter, mesh,
                        manager, teacher_params)
  # The trained model in the format eval.py, init_from and distill.teacher
  # read. Re-exported (replaced) when a resumed run finishes again.
  saved.save_model(workdir / "model", model_config, state.params,
                   overwrite=True)
  return state


def per_patch_losses(config: ml_collections.ConfigDict, model):
  """The model outputs and the loss terms of its per-patch pretraining heads.

  `loss.patch_weight` weights the patch head's cross-entropy (which object
  each patch shows), `loss.grounding_weight` the grounding head's BCE (which
  patches the question names). Returns the apply() flags and a function
  `(out, batch, metrics) -> the weighted terms`, which logs each in
  `metrics`.
  """
  weights = {}
  for name, field, what in (("patch", "patch_classes",
                             "model.patch_classes and model.patch_head_layer"),
                            ("grounding", "grounding_layer",
                             "model.grounding_layer")):
    weight = float(config.loss.get(f"{name}_weight", 0.0))
    if weight < 0:
      raise ValueError(f"loss.{name}_weight={weight} must be >= 0.")
    if weight and not getattr(model.config, field, 0):
      raise ValueError(
          f"loss.{name}_weight > 0 trains a {name} head the model lacks: set "
          f"{what} (ViLT only).")
    if weight:
      weights[name] = weight
  outputs = {f"output_{name}_logits": True for name in weights}

  def terms(out, batch, metrics):
    total = 0.0
    if "patch" in weights:
      loss, metrics["patch_acc"] = losses.patch_ce(
          out["patch_logits"], batch["patch_targets"])
      metrics["patch_loss"] = losses.masked_mean(loss, batch["valid"])
      total += weights["patch"] * metrics["patch_loss"]
    if "grounding" in weights:
      loss, metrics["grounding_acc"] = losses.grounding_bce(
          out["grounding_logits"], batch["grounding_targets"])
      metrics["grounding_loss"] = losses.masked_mean(loss, batch["valid"])
      total += weights["grounding"] * metrics["grounding_loss"]
    return total

  return outputs, terms


def distilled_run(config: ml_collections.ConfigDict, teacher_dir,
                  teacher_digest: str, reduce: ReduceConfig, root, *,
                  steps: int, lr: float, warmup_steps: int) -> pathlib.Path:
  """The model of a short distillation of `reduce` from the unreduced
  teacher (PuMer's recipe), trained once and then reused.

  Starts from the teacher's weights; `config` gives the data and the rest.
  The workdir under `root` is named by a digest of the whole run config
  and of the teacher's weights (`saved.weights_digest`), so any change (a
  setting, the steps, the lr, a replaced teacher) trains anew, beside; a
  finished run is reused, an interrupted one resumed.
  """
  c = config.copy_and_resolve_references()
  c.unlock()
  c.reduce = reduce.to_dict()
  c.init_from = str(teacher_dir)
  c.distill.teacher = str(teacher_dir)
  c.total_steps = steps
  c.checkpoint_every = steps
  c.optim.lr = lr
  c.optim.warmup_steps = warmup_steps
  c.stop_at = 0
  # The per-patch heads are pretraining devices: a reduced model has no
  # patches to label after its first reduction.
  c.loss.patch_weight = 0.0
  c.loss.grounding_weight = 0.0
  c.lock()
  digest = hashlib.sha1((c.to_json(sort_keys=True) + teacher_digest)
                        .encode()).hexdigest()[:8]
  workdir = pathlib.Path(root) / f"trained_{reduce.method}_{digest}"
  if not (workdir / "model" / saved.CONFIG_FILE).exists():
    train_and_evaluate(c, workdir)
  return workdir / "model"
