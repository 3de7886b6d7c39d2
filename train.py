r"""Trains a model from a config file into a workdir (resumes automatically).

  python train.py --config configs/vilt_shapes.py --workdir runs/shapes
  python train.py --config configs/vilt_vqa.py:method=pumer \
      --config.total_steps=10000 --workdir runs/vqa_pumer

On several hosts, run the same command on each with --multihost: it calls
jax.distributed.initialize() (coordinator from the cluster environment) and
the mesh spans every device.
"""

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (a get_config(arg) module).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() first.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
  import jax
  if _MULTIHOST.value:
    jax.distributed.initialize()
  from pumer_jax import train_lib
  train_lib.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
