r"""ViLT-B/32 on NLVR2 (two images), from the Hugging Face NLVR2 checkpoint;
PuMer layers (2, 5, 8) with p=0.1, m=0.3, t=0.2.

  python -m pumer_jax.convert vilt --hf_dir vilt-b32-finetuned-nlvr2 --out ckpt/vilt-nlvr2
  python train.py --config configs/vilt_nlvr2.py:method=pumer --workdir runs/nlvr2_pumer \
      --config.init_from=ckpt/vilt-nlvr2 --config.distill.teacher=ckpt/vilt-nlvr2 \
      --config.data.manual_dir=PATH/TO/NLVR2 --config.data.tokenizer=PATH/TO/vocab.txt
  python eval.py --config configs/vilt_nlvr2.py --workdir runs/nlvr2_pumer

Expected (PuMer paper): 75.7 accuracy unreduced, 75.6 with PuMer.
Not reproduced here (no data, no GPU on this machine).
"""

from pumer_jax.configs.vilt_task import vilt_task_config


def get_config(arg=None):
  return vilt_task_config(arg, task="nlvr2", dataset="nlvr2", text_len=40,
                          pumer_layers=(2, 5, 8), num_labels=2, head="nlvr2",
                          num_images=2, modality_type_vocab_size=3)
