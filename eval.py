r"""Evaluates a model under several reducers; writes a table and JSON.

  python eval.py --config configs/vilt_shapes.py --workdir runs/shapes
  python eval.py --config configs/vilt_vqa.py --workdir runs/vqa \
      --config.eval.methods=none,pumer,tome --config.eval.split=validation

The model is `config.eval.checkpoint`, or the workdir's trained model
(`WORKDIR/model`). Results go to WORKDIR/eval_<split>.json.
"""

from pumer_jax import entry
from pumer_jax.evaluate import runner


if __name__ == "__main__":
  entry.run(runner.main)
