r"""Evaluates a model under several reducers; writes a table and JSON.

  python eval.py --config configs/vilt_shapes.py --workdir runs/shapes
  python eval.py --config configs/vilt_vqa.py --workdir runs/vqa \
      --config.eval.methods=none,pumer,tome --config.eval.split=validation

The model is `config.eval.checkpoint`, or the workdir's trained model
(`WORKDIR/model`). Results go to WORKDIR/eval_<split>.json.
"""

from pumer_jax import entry


def evaluate(config, workdir):
  from pumer_jax import eval_lib
  eval_lib.main(config, workdir)


if __name__ == "__main__":
  entry.run(evaluate)
