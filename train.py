r"""Trains a model from a config file into a workdir (resumes automatically).

  python train.py --config configs/vilt_shapes.py --workdir runs/shapes
  python train.py --config configs/vilt_vqa.py:method=pumer \
      --config.total_steps=10000 --workdir runs/vqa_pumer

On several hosts, run the same command on each with --multihost: it calls
jax.distributed.initialize() (coordinator from the cluster environment) and
the mesh spans every device.
"""

from pumer_jax import entry


def train(config, workdir):
  from pumer_jax import train_lib
  train_lib.train_and_evaluate(config, workdir)


if __name__ == "__main__":
  entry.run(train)
