r"""Trains a model from a config file into a workdir (resumes automatically).

  python train.py --config configs/vilt_shapes.py --workdir runs/shapes
  python train.py --config configs/vilt_vqa.py:method=pumer \
      --config.total_steps=10000 --workdir runs/vqa_pumer

The config picks the trainer: EfficientVLM's (`config.stage` set, see
configs/efficientvlm.py) or fine-tuning with a reducer, optionally
distilled (`pumer_jax.train.finetune`). On several hosts, run the same
command on each with --multihost: it calls jax.distributed.initialize()
(coordinator from the cluster environment) and the mesh spans every device.
"""

from pumer_jax import entry
from pumer_jax.train import efficientvlm, finetune


def train(config, workdir):
  trainer = efficientvlm if config.stage else finetune
  trainer.train_and_evaluate(config, workdir)


if __name__ == "__main__":
  entry.run(train)
