r"""METER-CLIP16-RoBERTa on NLVR2 (two images per example) at 288x288, the
resolution METER fine-tunes NLVR2 at; PuMer in fusion blocks 1-3 with p=0.3,
m=0.5, t=0.2 (the paper's METER NLVR2 setting).

  python -m pumer_jax.convert meter --ckpt meter_clip16_288_roberta_nlvr2.ckpt --out ckpt/meter-nlvr2
  python train.py --config configs/meter_nlvr2.py:method=pumer --workdir runs/meter_nlvr2_pumer \
      --config.init_from=ckpt/meter-nlvr2 --config.distill.teacher=ckpt/meter-nlvr2 \
      --config.data.manual_dir=PATH/TO/NLVR2 --config.data.tokenizer=PATH/TO/roberta-base

Variants: method=..., runlocal (tiny model, a few steps).
"""

from pumer_jax.configs.meter_task import meter_task_config


def get_config(arg=None):
  return meter_task_config(
      arg, task="nlvr2", dataset="nlvr2", text_len=40, head="nlvr2",
      num_labels=2, image_size=288,
      pumer=dict(layers=(1, 2, 3), prune_ratio=0.3, image_merge_ratio=0.5,
                 text_merge_ratio=0.2))
