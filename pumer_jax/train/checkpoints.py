"""The workdir and its orbax checkpoints: claim, save, resume, quarantine.

A workdir belongs to one run: `claim_workdir` records its config and
refuses a workdir that holds a different one. Checkpoints hold the train
state and the data iterator's position, so a resumed run continues exactly
where the saved one stopped; a checkpoint that cannot be read is moved to
`corrupt_checkpoints/` (never deleted) and the one before it restored.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from pumer_jax.configs.base import base_config
from pumer_jax.train.state import TrainState

# Config keys that may change between a run and its resumption.
RESUMABLE_KEYS = ("total_steps", "log_every", "checkpoint_every",
                  "keep_checkpoints", "eval", "progress", "debug_checks")


def comparable_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  values = json.loads(config.to_json_best_effort())
  return {k: v for k, v in values.items() if k not in RESUMABLE_KEYS}


def _with_defaults(saved: Any, defaults: Any) -> Any:
  """`saved` with every key it lacks taken from `defaults` (nested)."""
  if not (isinstance(saved, dict) and isinstance(defaults, dict)):
    return saved
  out = {k: _with_defaults(v, defaults.get(k)) for k, v in saved.items()}
  for key, value in defaults.items():
    out.setdefault(key, value)
  return out


def claim_workdir(workdir: pathlib.Path,
                  config: ml_collections.ConfigDict) -> None:
  """Records the run's config; refuses a workdir that holds another run."""
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / "config.json"
  mine = comparable_config(config)
  saved_steps = workdir / "checkpoints"
  if (not path.exists() and saved_steps.is_dir()
      and any(saved_steps.iterdir())):
    raise FileExistsError(
        f"{workdir} holds checkpoints but no config.json, so which run they "
        "belong to is unknown (was the workdir moved while a run was still "
        "saving?); use a new --workdir, or delete that one yourself.")
  if path.exists():
    saved = json.loads(path.read_text())
    # A key added to the project since the run started, left at its
    # default, does not make it another run.
    defaults = comparable_config(base_config(saved.get("arch", "vilt")))
    theirs = _with_defaults(
        comparable_config(ml_collections.ConfigDict(saved)), defaults)
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


def iterator_state(iterator: Any) -> Any:
  """A grain iterator's position, JSON-ready (None for plain iterators)."""
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


def resume(manager, state: TrainState, train_iter: Any, workdir
           ) -> TrainState | None:
  """The latest checkpoint's state with the iterator moved to its position,
  or None when the workdir has no readable checkpoint."""
  restored, data_state = restore_latest(manager, state)
  if restored is None:
    return None
  set_iterator_state(train_iter, data_state)
  print(f"resumed from step {int(restored.step)} in {workdir}")
  return restored
