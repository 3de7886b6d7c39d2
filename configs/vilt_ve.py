r"""ViLT-B/32 on SNLI-VE (3-way), from the ViLT MLM checkpoint; PuMer layers
(2, 4, 6, 8) with p=0.1, m=0.3, t=0.2 (the paper's ViLT VE setting).

  python -m pumer_jax.convert vilt --hf_dir vilt-b32-mlm --out ckpt/vilt-mlm
  python train.py --config configs/vilt_ve.py --workdir runs/ve \
      --config.init_from=ckpt/vilt-mlm --config.data.manual_dir=PATH/TO/SNLI-VE \
      --config.data.tokenizer=PATH/TO/vocab.txt
  python train.py --config configs/vilt_ve.py:method=pumer --workdir runs/ve_pumer \
      --config.init_from=runs/ve/model --config.distill.teacher=runs/ve/model ...
  python eval.py --config configs/vilt_ve.py --workdir runs/ve_pumer

Expected (PuMer paper): 76.9 accuracy unreduced, 76.4 with PuMer.
Not reproduced here (no data, no GPU on this machine).
"""

from pumer_jax.configs.vilt_task import vilt_task_config


def get_config(arg=None):
  return vilt_task_config(arg, task="ve", dataset="snli_ve", text_len=40,
                          pumer_layers=(2, 4, 6, 8), num_labels=3, head="ve")
