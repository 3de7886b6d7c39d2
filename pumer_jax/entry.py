"""What train.py and eval.py share: their flags and process set-up."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags
import jax

from pumer_jax import xla_cpu


# A plain cluster (or one machine's localhost): each process is told the
# coordinator, the process count and its own id in the environment.
DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                   "JAX_PROCESS_ID")


def initialize_distributed() -> None:
  """`jax.distributed.initialize()`, before anything touches a device.

  With the three `DISTRIBUTED_ENV` variables set, they name the
  coordinator, the number of processes and this process's id; without
  them, JAX detects the cluster itself (SLURM, Cloud TPU, ...). On CPU,
  cross-process collectives go through gloo.
  """
  values = {k: os.environ.get(k) for k in DISTRIBUTED_ENV}
  given = [k for k, v in values.items() if v]
  if given and len(given) != len(DISTRIBUTED_ENV):
    missing = sorted(set(DISTRIBUTED_ENV) - set(given))
    raise ValueError(
        f"--multihost: {given} are set but {missing} are not; set all three "
        "(JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES=N, "
        "JAX_PROCESS_ID=0..N-1), or none on a cluster JAX detects itself.")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if not given:
    jax.distributed.initialize()
    return
  jax.distributed.initialize(
      coordinator_address=values["JAX_COORDINATOR_ADDRESS"],
      num_processes=int(values["JAX_NUM_PROCESSES"]),
      process_id=int(values["JAX_PROCESS_ID"]))


def run(body: Callable[[Any, str], Any]) -> None:
  """Defines --config/--workdir/--multihost and runs `body(config, workdir)`.

  --multihost calls `initialize_distributed()` first (the coordinator comes
  from the environment), so the mesh spans every host.
  """
  config = config_flags.DEFINE_config_file(
      "config", None, "Config file (a get_config(arg) module).",
      lock_config=True)
  workdir = flags.DEFINE_string("workdir", None, "Run directory.")
  multihost = flags.DEFINE_bool(
      "multihost", False, "Call jax.distributed.initialize() first.")
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv):
    del argv
    xla_cpu.apply_fast_defaults()
    logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
    if multihost.value:
      initialize_distributed()
    body(config.value, workdir.value)

  app.run(main)
