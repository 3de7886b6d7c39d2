r"""METER-CLIP16-RoBERTa image-text retrieval on Flickr30k at 384x384 (ITM
score, IR/TR R@1/5/10); PuMer in fusion blocks 0-3 with the SNLI-VE ratios
p=0.3, m=0.5, t=0.2.

  python -m pumer_jax.convert meter --ckpt meter_clip16_384_roberta_flickr.ckpt --out ckpt/meter-f30k
  python train.py --config configs/meter_retrieval.py:method=pumer --workdir runs/meter_f30k_pumer \
      --config.init_from=ckpt/meter-f30k --config.distill.teacher=ckpt/meter-f30k \
      --config.data.manual_dir=PATH/TO/flickr30k --config.data.tokenizer=PATH/TO/roberta-base

Variants: method=..., runlocal (tiny model, a few steps).
"""

from pumer_jax.configs.meter_task import meter_task_config


def get_config(arg=None):
  return meter_task_config(
      arg, task="retrieval", dataset="flickr30k", text_len=40,
      head="retrieval", num_labels=1,
      pumer=dict(layers=(0, 1, 2, 3), prune_ratio=0.3, image_merge_ratio=0.5,
                 text_merge_ratio=0.2))
