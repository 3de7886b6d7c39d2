"""The training loop every trainer runs, and the set-up they share.

`run_loop` steps until `config.total_steps`, reports metrics one step late
(so the host never waits on the device), checkpoints every
`config.checkpoint_every` steps and at exit (also on Ctrl-C and SIGTERM),
and stops with an error on a non-finite loss, keeping the last good save.
"""

from __future__ import annotations

import pathlib
import signal
import time
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from pumer_jax.data import loaders
from pumer_jax.train import checkpoints, sharding
from pumer_jax.train.metrics_writer import MetricsWriter
from pumer_jax.train.state import TrainState


def make_mesh(config: ml_collections.ConfigDict):
  """The `('data', 'model')` mesh of `config.mesh`, checked against the
  global batch size."""
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)
  if config.batch_size % mesh.shape["data"]:
    raise ValueError(
        f"batch_size={config.batch_size} must divide over mesh.data="
        f"{mesh.shape['data']} devices.")
  return mesh


def train_iterator(config: ml_collections.ConfigDict,
                   override: Iterator[dict[str, np.ndarray]] | None):
  """The config's training data (this host's shard), unless overridden."""
  return override if override is not None else loaders.train_iterator(config)


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


def run_loop(config: ml_collections.ConfigDict, workdir: pathlib.Path,
             state: TrainState, step_fn, train_iter, mesh, manager,
             teacher_params: Any = None) -> TrainState:
  """Trains from `state.step` to `config.total_steps` (or `config.stop_at`,
  when set); returns the state."""
  start = int(jax.device_get(state.step))
  end = config.get("stop_at", 0) or config.total_steps
  if not 0 < end <= config.total_steps:
    raise ValueError(f"stop_at={config.stop_at} must be 0 or in "
                     f"[1, total_steps={config.total_steps}].")
  writer = MetricsWriter(workdir, enabled=jax.process_index() == 0,
                         total=config.total_steps, initial=start,
                         progress=config.progress)
  pending = None  # metrics held back one step so the host never waits
  clock = (time.perf_counter(), start)  # (time, step) of the last report
  # False while a step runs: the state it was given is donated, and a step
  # that raises (a failed debug check, Ctrl-C) leaves nothing to save.
  intact = True
  diverged = False
  try:
    with StopRequested() as stop, jax.set_mesh(mesh), \
        nn.logical_axis_rules(sharding.LOGICAL_RULES):
      for step in range(start, end):
        batch = sharding.put_batch(next(train_iter), mesh)
        intact = False
        state, metrics = step_fn(state, batch, teacher_params)
        intact = True
        if pending is not None and pending[0] % config.log_every == 0:
          clock = _report(writer, *pending, clock, config.batch_size)
        pending = (step + 1, metrics)
        if (step + 1) % config.checkpoint_every == 0:
          checkpoints.save_checkpoint(manager, state,
                                      checkpoints.iterator_state(train_iter))
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
    if intact and not diverged and int(jax.device_get(state.step)) > start:
      checkpoints.save_checkpoint(manager, state,
                                  checkpoints.iterator_state(train_iter))
    writer.close()
    manager.close()
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
