r"""ViLT-B/32 image-text retrieval on Flickr30k (Karpathy split), from the
Hugging Face Flickr30k checkpoint; ITM head, IR/TR R@1/5/10.

  python -m pumer_jax.convert vilt --hf_dir vilt-b32-finetuned-flickr30k --out ckpt/vilt-f30k
  python eval.py --config configs/vilt_retrieval.py --workdir runs/f30k \
      --config.eval.checkpoint=ckpt/vilt-f30k --config.data.manual_dir=PATH/TO/flickr30k \
      --config.data.tokenizer=PATH/TO/vocab.txt --config.eval.methods=none,pumer,tome

Training pairs each caption with its image (label 1) and with another
example's image (label 0). Evaluation scores every (image, caption) pair of
the split: 1000 x 5000 forward passes on the test split, as ViLT's.
Expected (ViLT paper, zero-shot-free fine-tuned): IR R@1 64.4, TR R@1 83.5.
Not reproduced here (no data, no GPU on this machine).
"""

from pumer_jax.configs.vilt_task import vilt_task_config


def get_config(arg=None):
  c = vilt_task_config(arg, task="retrieval", dataset="flickr30k",
                       text_len=40, pumer_layers=(2, 5, 8), num_labels=1,
                       head="retrieval")
  c.eval.split = "test"
  return c
