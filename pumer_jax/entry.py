"""What train.py and eval.py share: their flags and process set-up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags
import jax


def run(body: Callable[[Any, str], Any]) -> None:
  """Defines --config/--workdir/--multihost and runs `body(config, workdir)`.

  --multihost calls jax.distributed.initialize() first (the coordinator
  comes from the cluster environment), so the mesh spans every host.
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
    logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
    if multihost.value:
      jax.distributed.initialize()
    body(config.value, workdir.value)

  app.run(main)
