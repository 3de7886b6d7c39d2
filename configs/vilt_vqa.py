r"""ViLT-B/32 on VQAv2, from the Hugging Face VQA checkpoint; PuMer layers
(2, 5, 8) with p=0.1, m=0.3, t=0.2 (the paper's ViLT VQA setting).

  python -m pumer_jax.convert vilt --hf_dir vilt-b32-finetuned-vqa --out ckpt/vilt-vqa
  python train.py --config configs/vilt_vqa.py:method=pumer --workdir runs/vqa_pumer \
      --config.init_from=ckpt/vilt-vqa --config.distill.teacher=ckpt/vilt-vqa \
      --config.data.manual_dir=PATH/TO/VQAv2 --config.data.tokenizer=PATH/TO/vocab.txt
  python eval.py --config configs/vilt_vqa.py --workdir runs/vqa_pumer

The official files go in data.manual_dir (see pumer_jax/data/vqa_v2.py).
Expected (PuMer paper, test-dev): ViLT 71.3 VQA score unreduced, 70.9 with
PuMer. Not reproduced here: this machine has neither the data nor a GPU.
"""

from pumer_jax.configs.vilt_task import vilt_task_config


def get_config(arg=None):
  return vilt_task_config(arg, task="vqa", dataset="vqa_v2", text_len=32,
                          pumer_layers=(2, 5, 8), num_labels=3129, head="vqa",
                          score_heads="first")
