"""Training: sharded state, the jitted train step, and the loop.

`train_and_evaluate(config, workdir)` reads top to bottom in sections:
model, mesh, data, sharded state, teacher, resume, loop. The pieces it uses
(`create_train_state`, `make_train_step`) are top-level functions so tests
can run one step without the loop.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import signal
import time
from collections.abc import Iterator
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from pumer_jax import checkpoint as model_checkpoint
from pumer_jax import losses, optim, sharding
from pumer_jax.compress import distill as compress_distill
from pumer_jax.compress import gates as gates_lib
from pumer_jax.compress import hard_concrete
from pumer_jax.compress.finalize import GATES_DIR
from pumer_jax.models import ARCHITECTURES
from pumer_jax.models.inputs import model_inputs
from pumer_jax.models.reducers import ReduceConfig
from pumer_jax.reduce import keep_ratio_loss

# Config keys that may change between a run and its resumption.
RESUMABLE_KEYS = ("total_steps", "log_every", "checkpoint_every",
                  "keep_checkpoints", "eval", "progress")


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


def build_model_config(config: ml_collections.ConfigDict) -> Any:
  """The `config.arch` model config (ViltConfig, MeterConfig) from
  `config.model` and `config.reduce`; unknown keys fail."""
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
  values["reduce"] = ReduceConfig.from_mapping(config.reduce)
  return config_cls(**values)


def build_model(config: ml_collections.ConfigDict):
  """`(model, model_config, example inputs)` for `config`."""
  model_config = build_model_config(config)
  arch = ARCHITECTURES[config.arch]
  example = arch.example_inputs(model_config, 1, config.data.text_len)
  return arch.module(model_config), model_config, example


# ---------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation,
    example: dict[str, Any], rng: jax.Array,
    extra_params: dict[str, Any] | None = None,
) -> TrainState:
  """Initial state (boxed params: logical axis metadata kept for sharding).

  `extra_params` join the model's (EfficientVLM's gate state).
  """
  init_rng, state_rng = jax.random.split(rng)
  params = {**model.init(init_rng, **example)["params"],
            **(extra_params or {})}
  opt_state = tx.init(nn.meta.unbox(params))
  return TrainState(jnp.zeros((), jnp.int32), params, opt_state, state_rng)


def state_shardings(abstract: TrainState, tx, mesh) -> TrainState:
  """Shardings for every leaf: params by logical axes, optimiser alike."""
  param_sh = sharding.logical_shardings(abstract.params, mesh)
  # multi_transform leaves MaskedNode placeholders for other groups' params.
  masked = lambda x: isinstance(x, optax.MaskedNode)
  opt_sh = optax.tree_map_params(
      tx, lambda p, s: p if masked(p) else s, abstract.opt_state, param_sh,
      transform_non_params=lambda _: sharding.replicated(mesh),
      is_leaf=masked,
  )
  rep = sharding.replicated(mesh)
  return TrainState(rep, param_sh, opt_sh, rep)


def init_sharded_state(model, tx, example, rng, mesh, extra_params=None):
  """Creates the state already sharded: parameters are born on devices.

  Returns (state with unboxed params, its shardings).
  """
  abstract = jax.eval_shape(
      lambda r: create_train_state(model, tx, example, r, extra_params), rng)
  shardings = state_shardings(abstract, tx, mesh)

  def init(r):
    state = create_train_state(model, tx, example, r, extra_params)
    return state.replace(params=nn.meta.unbox(state.params))

  with jax.set_mesh(mesh), nn.logical_axis_rules(
      sharding.LOGICAL_RULES):
    state = jax.jit(init, out_shardings=shardings)(rng)
  return state, shardings


# ---------------------------------------------------------------------------
# Step
# ---------------------------------------------------------------------------


def make_train_step(
    model: nn.Module, tx: optax.GradientTransformation,
    config: ml_collections.ConfigDict, teacher: nn.Module | None = None,
    gate_layout: Any = None,
):
  """The train step `(state, batch, teacher_params) -> (state, metrics)`.

  Loss = task + distill.logits * KL(teacher || student) on logits
  + distill.hidden * MSE of the pooled features (their shapes agree even
  when the student drops tokens) + DynamicViT's ratio loss.
  EfficientVLM stages (`config.stage`) weigh task, logits KL, attention and
  hidden-state KD by `config.kd`; pruning (`gate_layout`) samples gates
  from `params["hard_concrete"]` and adds the sparsity Lagrangian.
  """
  task_loss = losses.TASK_LOSSES[config.task]
  label_key = "labels" if config.task == "vqa" else "label"
  reduce = model.config.reduce
  distill = config.distill
  kd_weights, prune = config.kd, config.prune
  efficientvlm = bool(config.stage)

  def loss_fn(params, batch, teacher_params, rng, step):
    if config.task == "retrieval":
      batch = losses.itm_pairs(batch)
    drop_rng, gumbel_rng, gate_rng = jax.random.split(rng, 3)
    gate_state = params.get(optim.GATE_STATE)
    gates = None
    if gate_state is not None:
      params = {k: v for k, v in params.items() if k != optim.GATE_STATE}
      frozen = (step >= prune.freeze_step) & (prune.freeze_step >= 0)
      gates = gates_lib.masks(gate_rng, gate_state["log_alpha"], frozen)
    maps = dict(output_attentions=efficientvlm and kd_weights.attn > 0,
                output_hidden_states=efficientvlm and kd_weights.hidden > 0)
    out = model.apply({"params": params}, **model_inputs(batch), train=True,
                      rngs={"dropout": drop_rng, "gumbel": gumbel_rng},
                      gates=gates, **maps)
    valid = batch["valid"]
    task = losses.masked_mean(task_loss(out["logits"], batch[label_key]),
                              valid)
    metrics = {"task_loss": task}
    if efficientvlm:
      loss = kd_weights.task * task
      t_out = teacher.apply({"params": teacher_params}, **model_inputs(batch),
                            train=False, **maps)
      kd_terms = {"logits": losses.logits_kl(out["logits"], t_out["logits"],
                                             kd_weights.temperature)}
      kd_terms.update(compress_distill.distill_losses(out, t_out))
      for name, value in kd_terms.items():
        metrics[f"kd_{name}"] = losses.masked_mean(value, valid)
        loss = loss + kd_weights[name] * metrics[f"kd_{name}"]
      if gate_state is not None:
        sparsity = gate_layout.expected_sparsity(gate_state["log_alpha"])
        target = gates_lib.target_at(step, prune.target, prune.warmup_steps)
        lagrangian = gates_lib.lagrangian(sparsity, target,
                                          gate_state["lambdas"])
        loss = loss + lagrangian
        metrics.update(expected_sparsity=sparsity, target_sparsity=target,
                       lagrangian=lagrangian,
                       lambda1=gate_state["lambdas"][0],
                       lambda2=gate_state["lambdas"][1])
      metrics["loss"] = loss
      return loss, metrics
    loss = distill.task_weight * task if teacher is not None else task
    if teacher is not None:
      t_out = teacher.apply({"params": teacher_params},
                            **model_inputs(batch), train=False)
      kd = losses.masked_mean(losses.logits_kl(
          out["logits"], t_out["logits"], distill.temperature), valid)
      metrics["kd_logits"] = kd
      loss = loss + distill.logits_weight * kd
      if distill.hidden_weight:
        hid = losses.masked_mean(losses.hidden_mse(
            out["pooled"][:, None], t_out["pooled"][:, None]), valid)
        metrics["kd_hidden"] = hid
        loss = loss + distill.hidden_weight * hid
    if reduce.method == "dynamicvit":
      ratio = keep_ratio_loss(out["keep_fractions"], reduce.keep_ratios)
      metrics["ratio_loss"] = ratio
      loss = loss + config.dynamicvit.ratio_weight * ratio
    metrics["loss"] = loss
    return loss, metrics

  def train_step(state: TrainState, batch, teacher_params):
    rng = jax.random.fold_in(state.rng, state.step)
    grads, metrics = jax.grad(loss_fn, has_aux=True)(
        state.params, batch, teacher_params, rng, state.step)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if optim.GATE_STATE in params:
      gate_state = dict(params[optim.GATE_STATE])
      gate_state["log_alpha"] = jax.tree.map(
          hard_concrete.clip_log_alpha, gate_state["log_alpha"])
      params = {**params, optim.GATE_STATE: gate_state}
    metrics["grad_norm"] = optax.global_norm(grads)
    new_state = state.replace(step=state.step + 1, params=params,
                              opt_state=opt_state)
    return new_state, metrics

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


# ---------------------------------------------------------------------------
# Checkpoints and the workdir
# ---------------------------------------------------------------------------


def comparable_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  values = json.loads(config.to_json_best_effort())
  return {k: v for k, v in values.items() if k not in RESUMABLE_KEYS}


def claim_workdir(workdir: pathlib.Path,
                  config: ml_collections.ConfigDict) -> None:
  """Records the run's config; refuses a workdir that holds another run."""
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / "config.json"
  mine = comparable_config(config)
  if path.exists():
    theirs = comparable_config(
        ml_collections.ConfigDict(json.loads(path.read_text())))
    if theirs != mine:
      differ = sorted(k for k in set(mine) | set(theirs)
                      if mine.get(k) != theirs.get(k))
      raise FileExistsError(
          f"{workdir} holds a different run (config differs in {differ}); "
          "use a new --workdir, or delete that one yourself.")
  path.write_text(config.to_json_best_effort(indent=2) + "\n")


def checkpoint_manager(workdir: pathlib.Path, config) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.keep_checkpoints, create=True,
      enable_async_checkpointing=False)
  return ocp.CheckpointManager(workdir.absolute() / "checkpoints",
                               options=options)


def save_checkpoint(manager, state: TrainState, data_state: Any) -> None:
  step = int(jax.device_get(state.step))
  if step in manager.all_steps():
    return
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=ocp.args.JsonSave({"iterator": data_state})))
  manager.wait_until_finished()


def restore_latest(manager, abstract_state: TrainState):
  """Restores the newest readable checkpoint, falling back past corrupt ones.

  Returns (state, data_state) or (None, None) when there is none.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  for i, step in enumerate(steps):
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state),
          data=ocp.args.JsonRestore()))
      return restored.state, restored.data["iterator"]
    except Exception as e:  # orbax raises many types for damaged files
      later = steps[i + 1] if i + 1 < len(steps) else None
      aside = quarantine_checkpoint(manager, step)
      print(f"checkpoint at step {step} is corrupt or incomplete "
            f"({type(e).__name__}: {str(e)[:200]}); moved it to {aside}; "
            + (f"falling back to step {later}." if later is not None
               else "no earlier checkpoint: starting from scratch."))
  return None, None


def quarantine_checkpoint(manager, step: int) -> pathlib.Path:
  """Moves a damaged step out of the manager's way, keeping its files."""
  source = pathlib.Path(manager.directory) / str(step)
  target = source.parent.parent / "corrupt_checkpoints" / str(step)
  target.parent.mkdir(exist_ok=True)
  suffix = 0
  while target.exists():
    suffix += 1
    target = target.with_name(f"{step}.{suffix}")
  source.rename(target)
  manager.reload()
  return target


# ---------------------------------------------------------------------------
# Iterator state: grain iterators checkpoint their position.
# ---------------------------------------------------------------------------


def iterator_state(iterator: Any) -> Any:
  if not hasattr(iterator, "get_state"):
    return None
  state = iterator.get_state()
  return state.decode() if isinstance(state, bytes) else state


def set_iterator_state(iterator: Any, state: Any) -> None:
  if state is None or not hasattr(iterator, "set_state"):
    return
  try:
    iterator.set_state(state)
  except TypeError:
    iterator.set_state(state.encode())


class StopRequested:
  """Turns SIGTERM into a flag the loop checks, so it saves before exiting."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    signal.signal(signal.SIGTERM, self._previous)
    return False


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------


def load_teacher(config, mesh, example):
  """The frozen distillation teacher and its sharded parameters, or Nones."""
  source = config.teacher_checkpoint if config.stage else (
      config.distill.teacher)
  if config.stage and not source:
    raise ValueError(
        f"stage={config.stage!r} distils from --config.teacher_checkpoint="
        "DIR (the unreduced, full-depth model); it is empty.")
  if not source:
    return None, None, None
  teacher, variables = model_checkpoint.load_model(
      source, reduce=ReduceConfig(method="none"))
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


def init_params_from(config, state: TrainState) -> TrainState:
  """Overwrites parameters with a saved model's (`config.init_from`).

  Parameters the saved model lacks (a new head size, DynamicViT's
  predictors) keep their fresh initialisation and are listed.
  """
  _, variables = model_checkpoint.load_model(config.init_from)
  return overwrite_params(state, variables["params"], config.init_from)


def overwrite_params(state: TrainState, saved_params: Any, source: str
                     ) -> TrainState:
  """`state` with every parameter `saved_params` has (same shape) copied in,
  sharded as before; the others keep their fresh values and are listed."""
  saved = flax.traverse_util.flatten_dict(saved_params)
  mine = flax.traverse_util.flatten_dict(state.params)
  kept, fresh = {}, []
  for key, value in mine.items():
    if key in saved and saved[key].shape == value.shape:
      kept[key] = jax.device_put(saved[key].astype(value.dtype),
                                 value.sharding)
    else:
      kept[key] = value
      fresh.append("/".join(key))
  if fresh:
    print(f"init from {source}: {len(fresh)} parameters keep their "
          f"fresh init: {fresh[:6]}{' ...' if len(fresh) > 6 else ''}")
  return state.replace(params=flax.traverse_util.unflatten_dict(kept))


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
    train_iter: Iterator[dict[str, np.ndarray]] | None = None,
) -> TrainState:
  """Trains `config` in `workdir`, resuming its latest checkpoint.

  `train_iter` overrides the config's data (tests pass in-memory batches).
  """
  from pumer_jax import metrics_writer  # local: keeps tensorboardX optional

  workdir = pathlib.Path(workdir)
  if jax.process_index() == 0:
    claim_workdir(workdir, config)

  # ----- Model --------------------------------------------------------------
  start_params = None  # EfficientVLM stages start from a checkpoint
  if config.stage:
    model_config, start_params = compress_distill.stage_model(config)
    arch = ARCHITECTURES[config.arch]
    model = arch.module(model_config)
    example = arch.example_inputs(model_config, 1, config.data.text_len)
  else:
    model, model_config, example = build_model(config)

  # ----- Mesh ---------------------------------------------------------------
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)
  if config.batch_size % mesh.shape["data"]:
    raise ValueError(
        f"batch_size={config.batch_size} must divide over mesh.data="
        f"{mesh.shape['data']} devices.")

  # ----- Data ---------------------------------------------------------------
  if train_iter is None:
    from pumer_jax import input_pipeline
    train_iter = input_pipeline.train_iterator(config)

  # ----- Sharded state ------------------------------------------------------
  abstract_params = nn.meta.unbox(jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), **example))["params"])
  gate_layout, extra_params = None, None
  if config.stage == "prune":
    gate_layout = gates_lib.GateLayout.build(model_config, abstract_params)
    extra_params = {optim.GATE_STATE: gates_lib.init_state(gate_layout)}
    abstract_params = {**abstract_params, **extra_params}
  tx = optim.make_optimizer(config.optim, config.total_steps, abstract_params,
                            gate_lr=config.prune.reg_lr)
  rng = jax.random.PRNGKey(config.seed)
  state, shardings = init_sharded_state(model, tx, example, rng, mesh,
                                        extra_params)

  # ----- Teacher ------------------------------------------------------------
  teacher, teacher_params, teacher_sh = load_teacher(config, mesh, example)
  step_fn = jit_train_step(
      make_train_step(model, tx, config, teacher, gate_layout), shardings,
      mesh, teacher_sh)

  # ----- Resume -------------------------------------------------------------
  manager = checkpoint_manager(workdir, config)
  restored, data_state = restore_latest(manager, state)
  if restored is not None:
    state = restored
    set_iterator_state(train_iter, data_state)
    print(f"resumed from step {int(state.step)} in {workdir}")
  elif start_params is not None:
    state = overwrite_params(state, start_params, f"stage {config.stage}")
  elif config.init_from:
    state = init_params_from(config, state)

  # ----- Loop ---------------------------------------------------------------
  start = int(jax.device_get(state.step))
  writer = metrics_writer.MetricsWriter(workdir, enabled=(
      jax.process_index() == 0), total=config.total_steps, initial=start,
      progress=config.progress)
  pending = None  # metrics held back one step so the host never waits
  clock = (time.perf_counter(), start)  # (time, step) of the last report
  diverged = False
  try:
    with StopRequested() as stop, jax.set_mesh(mesh), \
        nn.logical_axis_rules(sharding.LOGICAL_RULES):
      for step in range(start, config.total_steps):
        batch = sharding.put_batch(next(train_iter), mesh)
        state, metrics = step_fn(state, batch, teacher_params)
        if pending is not None and pending[0] % config.log_every == 0:
          clock = _report(writer, *pending, clock, config.batch_size)
        pending = (step + 1, metrics)
        if (step + 1) % config.checkpoint_every == 0:
          save_checkpoint(manager, state, iterator_state(train_iter))
        if stop.requested:
          print(f"SIGTERM at step {step + 1}: saving and stopping.")
          break
      if pending is not None:
        _report(writer, *pending, clock, config.batch_size)
  except FloatingPointError:
    diverged = True  # the state is already NaN: keep the last good save
    raise
  finally:
    # At exit, also on Ctrl-C or an error: never lose more than a step.
    if not diverged and int(jax.device_get(state.step)) > start:
      save_checkpoint(manager, state, iterator_state(train_iter))
    writer.close()
    manager.close()
  # The trained model in the format eval.py, init_from and distill.teacher
  # read. Re-exported (replaced) when a resumed run finishes again.
  params = {k: v for k, v in state.params.items() if k != optim.GATE_STATE}
  model_checkpoint.save_model(workdir / "model", model_config, params,
                              overwrite=True)
  if optim.GATE_STATE in state.params:
    gates_lib.save_gate_state(workdir / GATES_DIR,
                              state.params[optim.GATE_STATE])
  return state


def _report(writer, step: int, metrics, clock, batch_size: int):
  """Checks and writes one step's metrics; returns the new clock."""
  values = {k: float(v) for k, v in jax.device_get(metrics).items()}
  if not np.isfinite(values["loss"]):
    raise FloatingPointError(
        f"loss is {values['loss']} at step {step}; lower optim.lr or check "
        "the data (the last checkpoint is kept).")
  now = time.perf_counter()
  last_time, last_step = clock
  values["examples_per_s"] = ((step - last_step) * batch_size
                              / max(now - last_time, 1e-9))
  writer.write(step, values)
  return now, step
