"""The ViLT-B/32 fine-tuning config shared by configs/vilt_{vqa,ve,nlvr2,
retrieval}.py: model shape, data, optimiser and PuMer's reference reducer."""

from __future__ import annotations

from pumer_jax.configs.base import base_config, parse_arg, pick, reduce_config

# PuMer's reference ratios for ViLT (DESIGN 4.3), reduce layers per task.
PUMER_RATIOS = dict(prune_ratio=0.1, image_merge_ratio=0.3,
                    text_merge_ratio=0.2)


def vilt_task_config(arg, *, task: str, dataset: str, text_len: int,
                     pumer_layers: tuple[int, ...], num_labels: int,
                     head: str, score_heads: str = "mean", **model):
  """A ViLT-B/32 config at 384x384 for one task; variants as in big_vision.

  PuMer runs its reference code's semantics (`reduce.semantics="official"`)
  with the task's `score_heads` as PuMer's commands set `sim_method` (VQA:
  the first head, its default; SNLI-VE and NLVR2: the mean), and the VQA
  loss is averaged over answers as PuMer's code (`loss.vqa_reduction`).

  Variants: method=none|pumer|tome|dynamicvit|smres, runlocal (tiny model,
  a few steps: checks the wiring on a laptop, not the accuracy).
  """
  args = parse_arg(arg, method="none", runlocal=False)
  c = base_config()
  c.task = task
  c.batch_size = 256
  c.total_steps = 10_000
  c.checkpoint_every = 1000
  c.model.update(dict(head=head, num_labels=num_labels,
                      max_position_embeddings=40, input_size=(384, 384),
                      **model))
  reducers = dict(
      none=reduce_config(),
      pumer=reduce_config(method="pumer", layers=pumer_layers,
                          score_heads=score_heads, **PUMER_RATIOS),
      tome=reduce_config(method="tome", tome_r=8),
      dynamicvit=reduce_config(method="dynamicvit", layers=(3, 6, 9),
                               keep_ratios=(0.7, 0.49, 0.343)),
      smres=reduce_config(method="smres", smres_size=(288, 288)),
      evit=reduce_config(method="evit", layers=(3, 6, 9), keep_rate=0.7),
  )
  c.reduce = pick(reducers, args.method, "method")
  c.reducers.update(reducers)
  c.data.name = dataset
  c.data.text_len = text_len
  c.loss.vqa_reduction = "mean"  # PuMer's code: BCE over batch x answers
  c.optim.lr = 1e-4
  c.optim.warmup_steps = 1000
  c.optim.lr_mults.head = 10.0  # ViLT's fine-tuning head multiplier
  c.eval.split = "validation"
  if args.runlocal:
    c.debug_checks = True  # checkify the input values inside jit
    c.batch_size = 4
    c.total_steps = 3
    c.checkpoint_every = 2
    c.log_every = 1
    c.optim.warmup_steps = 1
    c.eval.batch_size = 4
    c.model.update(dict(hidden_size=64, num_hidden_layers=12,
                        num_attention_heads=4, intermediate_size=128,
                        input_size=(96, 96)))
  return c
