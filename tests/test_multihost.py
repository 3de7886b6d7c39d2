"""Two real processes on localhost: `train.py --multihost`, as on a cluster.

Each process reads its own shard of the data; together they train exactly
what one process trains on the same global batches, write one orbax
checkpoint that a second two-process run resumes, and leave a model that
a one-process `eval.py` loads.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from pumer_jax.data import loaders
from pumer_jax.train import finetune
from train_fixtures import shapes_config

ROOT = pathlib.Path(__file__).parent.parent
STEPS, MORE = 4, 6
# A constant learning rate (end_lr = lr): the decay would otherwise depend
# on total_steps, which the resumed run extends.
FLAGS = ["--config.total_steps={steps}", "--config.checkpoint_every=2",
         "--config.log_every=1", "--config.progress=False",
         "--config.debug_checks=False", "--config.optim.end_lr=0.001"]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def two_processes(workdir, data_dir, steps):
  """Runs train.py --multihost as processes 0 and 1; returns their stdout."""
  port = free_port()
  argv = [sys.executable, "train.py", "--multihost",
          "--config", "configs/vilt_shapes.py:runlocal",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          *(f.format(steps=steps) for f in FLAGS)]
  procs = [subprocess.Popen(
      argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True, env={**os.environ, "JAX_COORDINATOR_ADDRESS":
                      f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
                      "JAX_PROCESS_ID": str(i)}) for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for i, (p, out) in enumerate(zip(procs, outputs)):
    assert p.returncode == 0, f"process {i}:\n{out[-3000:]}"
  return outputs


def losses(workdir):
  rows = [json.loads(line) for line in
          (workdir / "metrics.jsonl").read_text().splitlines()]
  return np.array([r["loss"] for r in rows])


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
  data, one, two = tmp_path / "data", tmp_path / "one", tmp_path / "two"
  # One process, fed the global batches the two processes' shards make.
  c = shapes_config(data, MORE)
  shards = [loaders.train_iterator(c, shard=(i, 2)) for i in range(2)]
  global_batches = ({k: np.concatenate([a[k], b[k]]) for k in a}
                    for a, b in zip(*shards))
  finetune.train_and_evaluate(c, one, train_iter=global_batches)

  outputs = two_processes(two, data, STEPS)
  assert "resumed" not in outputs[0]
  np.testing.assert_allclose(losses(two), losses(one)[:STEPS], rtol=0,
                             atol=1e-5)
  # The checkpoint both wrote resumes in a second two-process run.
  outputs = two_processes(two, data, MORE)
  assert all(f"resumed from step {STEPS}" in out for out in outputs)
  np.testing.assert_allclose(losses(two), losses(one), rtol=0, atol=1e-5)

  evaluated = subprocess.run(
      [sys.executable, "eval.py", "--config", "configs/vilt_shapes.py:runlocal",
       f"--workdir={two}", f"--config.data.data_dir={data}",
       "--config.eval.methods=none", "--config.eval.timing_min_seconds=0"],
      cwd=ROOT, capture_output=True, text=True)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  assert json.loads((two / "eval_test.json").read_text())["results"]
