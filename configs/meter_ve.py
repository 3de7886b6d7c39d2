r"""METER-CLIP16-RoBERTa on SNLI-VE at 384x384; PuMer in fusion blocks 0-3
with p=0.3, m=0.5, t=0.2 (the paper's METER SNLI-VE setting).

  python -m pumer_jax.convert meter --ckpt meter_clip16_384_roberta_snli.ckpt --out ckpt/meter-ve
  python train.py --config configs/meter_ve.py:method=pumer --workdir runs/meter_ve_pumer \
      --config.init_from=ckpt/meter-ve --config.distill.teacher=ckpt/meter-ve \
      --config.data.manual_dir=PATH/TO/SNLI-VE --config.data.tokenizer=PATH/TO/roberta-base

Variants: method=..., runlocal (tiny model, a few steps).
"""

from pumer_jax.configs.meter_task import meter_task_config


def get_config(arg=None):
  return meter_task_config(
      arg, task="ve", dataset="snli_ve", text_len=40, head="ve", num_labels=3,
      pumer=dict(layers=(0, 1, 2, 3), prune_ratio=0.3, image_merge_ratio=0.5,
                 text_merge_ratio=0.2))
