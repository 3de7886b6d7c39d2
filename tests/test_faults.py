"""Fault tests for what users save: train.py killed with SIGKILL.

A run killed twice, once at a random moment and once in the middle of a
checkpoint save, resumes each time and ends with parameters bit-identical
to a run that was never interrupted.
"""

import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import flax
import numpy as np
import pytest

from pumer_jax.models import saved
from pumer_jax.train import finetune
from train_fixtures import shapes_config

ROOT = pathlib.Path(__file__).parent.parent
STEPS = 20


def command(workdir, data_dir):
  return [sys.executable, "train.py",
          "--config", "configs/vilt_shapes.py:runlocal",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          f"--config.total_steps={STEPS}", "--config.checkpoint_every=3",
          "--config.log_every=1", "--config.progress=False",
          "--config.debug_checks=False", "--config.optim.end_lr=0.001"]


def logged_steps(workdir) -> int:
  path = workdir / "metrics.jsonl"
  return len(path.read_text().splitlines()) if path.exists() else 0


def saving(workdir) -> bool:
  """An orbax save is under way: its temporary directory exists."""
  try:
    return any("tmp" in p for p in os.listdir(workdir / "checkpoints"))
  except FileNotFoundError:
    return False


def kill_when(process, ready, timeout=240.0) -> bool:
  """SIGKILLs `process` once `ready()`; False if it finished first."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if process.poll() is not None:
      return False
    if ready():
      process.send_signal(signal.SIGKILL)
      process.wait()
      return True
    time.sleep(0.001)
  process.kill()
  raise TimeoutError("train.py made no progress")


@pytest.mark.slow
def test_sigkill_twice_resumes_bit_identical(tmp_path):
  data = tmp_path / "data"
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  # The uninterrupted reference: train.py's own body, in this process.
  reference = shapes_config(data, STEPS)
  reference.checkpoint_every = 3
  finetune.train_and_evaluate(reference, straight)
  rng = random.Random(0)
  kills = []
  for moment in ("random", "during a save"):
    before = logged_steps(killed)
    process = subprocess.Popen(command(killed, data), cwd=ROOT,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    if moment == "during a save":
      ready = lambda: logged_steps(killed) > before and saving(killed)
    else:
      at = before + rng.randint(2, 6)
      ready = lambda: logged_steps(killed) >= at
    if kill_when(process, ready):
      kills.append((moment, logged_steps(killed)))
  assert len(kills) == 2, f"the run finished before every kill: {kills}"
  finished = subprocess.run(command(killed, data), cwd=ROOT,
                            capture_output=True, text=True)
  assert finished.returncode == 0, finished.stderr[-2000:]
  assert "resumed from step" in finished.stdout

  _, want = saved.load_model(straight / "model")
  _, got = saved.load_model(killed / "model")
  want = flax.traverse_util.flatten_dict(want["params"])
  got = flax.traverse_util.flatten_dict(got["params"])
  assert want.keys() == got.keys()
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg="/".join(key))
