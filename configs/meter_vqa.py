r"""METER-CLIP16-RoBERTa on VQAv2 at 384x384 (577 image tokens, 32 text);
PuMer in fusion blocks 0-3 with p=0.2, m=0.2, t=0.2 (the paper's METER VQA
setting): 347/26, 209/21, 125/17, 75/14 image/text tokens leave them.

  python -m pumer_jax.convert meter --ckpt meter_clip16_288_roberta_vqa.ckpt \
      --image_size 384 --out ckpt/meter-vqa
  python train.py --config configs/meter_vqa.py:method=pumer --workdir runs/meter_vqa_pumer \
      --config.init_from=ckpt/meter-vqa --config.distill.teacher=ckpt/meter-vqa \
      --config.data.manual_dir=PATH/TO/VQAv2 --config.data.tokenizer=PATH/TO/roberta-base
  python eval.py --config configs/meter_vqa.py --workdir runs/meter_vqa_pumer

Variants: method=..., runlocal (tiny model, random-shaped data, 3 steps),
shapes (the tiny model on the embedded shapes_vqa dataset, no download):

  python train.py --config configs/meter_vqa.py:shapes --workdir runs/meter_shapes

and shapes,pretrain (run=1, 2 or the default 3): the three runs of the
shipped checkpoints/meter_shapes (`pumer_jax/configs/shapes.py`), whose
README gives the commands.

Expected (PuMer paper, test-dev): METER 77.7 VQA score unreduced, 77.3 with
PuMer. Not reproduced here: this machine has neither the data nor a GPU.
"""

from pumer_jax.configs.meter_task import meter_task_config


def get_config(arg=None):
  return meter_task_config(
      arg, task="vqa", dataset="vqa_v2", text_len=32, head="vqa",
      num_labels=3129,
      pumer=dict(layers=(0, 1, 2, 3), prune_ratio=0.2, image_merge_ratio=0.2,
                 text_merge_ratio=0.2))
