r"""Evaluates a model under several reducers; writes a table and JSON.

  python eval.py --config configs/vilt_shapes.py --workdir runs/shapes
  python eval.py --config configs/vilt_vqa.py --workdir runs/vqa \
      --config.eval.methods=none,pumer,tome --config.eval.split=validation

The model is `config.eval.checkpoint`, or the workdir's trained model
(`WORKDIR/model`). Results go to WORKDIR/eval_<split>.json.
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
  from pumer_jax import eval_lib
  eval_lib.main(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
