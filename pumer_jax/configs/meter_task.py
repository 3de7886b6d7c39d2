"""The METER-CLIP16-RoBERTa fine-tuning config shared by
configs/meter_{vqa,ve,nlvr2,retrieval}.py: model shape, data, optimiser and
PuMer's reference reducer for METER (DESIGN 4.3)."""

from __future__ import annotations

from pumer_jax.configs import shapes as shapes_recipe
from pumer_jax.configs.base import base_config, parse_arg, pick, reduce_config
from pumer_jax.data.shapes_vocab import ANSWERS, VOCAB_SIZE

# The tiny model of `runlocal`: checks the wiring on a laptop in a minute.
# Every module's depth is even, so EfficientVLM can halve it.
RUNLOCAL_MODEL = dict(
    vision_hidden_size=32, vision_num_layers=2, vision_num_heads=2,
    vision_intermediate_size=64, image_size=64, patch_size=16,
    text_hidden_size=32, text_num_layers=2, text_num_heads=2,
    text_intermediate_size=64, hidden_size=32, num_fusion_layers=2,
    num_attention_heads=4, intermediate_size=64, input_size=(64, 64))


def meter_task_config(arg, *, task: str, dataset: str, text_len: int,
                      head: str, num_labels: int, pumer: dict,
                      image_size: int = 384, **model):
  """A METER config at `image_size` for one task; variants as big_vision.

  Variants: method=none|pumer|tome|dynamicvit|smres; runlocal (a tiny
  model, a few steps: checks the wiring, not the accuracy); shapes (VQA
  only: train on the embedded shapes_vqa dataset instead of VQAv2);
  shapes,pretrain (the recipe of checkpoints/meter_shapes, whose data it
  names; shapes,pretrain,run=1 and run=2 are the recipe's first two runs:
  `pumer_jax/configs/shapes.py`, its README).

  As in the PuMer paper, every variant (the unreduced baseline included)
  runs PuMer's METER fusion order, `model.fusion_order="text_first"`: each
  block's image side reads the text side's output. METER's released
  checkpoints were fine-tuned with its own order; to evaluate one as
  released, pass `--config.model.fusion_order=parallel`. PuMer runs its
  reference semantics (`reduce.semantics="official"`), prune scores
  averaged over heads as METER's reference does, and the VQA loss averaged
  over answers as PuMer's code (`loss.vqa_reduction`).
  """
  args = parse_arg(arg, method="none", runlocal=False, shapes=False,
                   pretrain=False, run=3)
  c = base_config("meter")
  c.task = task
  c.batch_size = 256  # METER fine-tunes VQA/VE at 512, NLVR2/retrieval 256
  c.total_steps = 10_000
  c.checkpoint_every = 1000
  c.model.update(dict(head=head, num_labels=num_labels,
                      num_images=2 if head == "nlvr2" else 1,
                      input_size=(image_size, image_size),
                      hidden_dropout_prob=0.1,
                      attention_probs_dropout_prob=0.1,
                      fusion_order="text_first", **model))
  reducers = dict(
      none=reduce_config(),
      # As PuMer's reference code, merges clamp at what bipartite matching
      # can merge: METER's SNLI-VE/NLVR2 setting m=0.5 asks for more.
      pumer=reduce_config(method="pumer", clamp_merge=True, **pumer),
      tome=reduce_config(method="tome", tome_r=64),
      dynamicvit=reduce_config(method="dynamicvit", layers=(1, 2, 3),
                               keep_ratios=(0.7, 0.49, 0.343)),
      smres=reduce_config(method="smres",
                          smres_size=(image_size * 3 // 4,) * 2),
      # In PuMer's blocks, at EViT's reference rate.
      evit=reduce_config(method="evit", layers=pumer["layers"],
                         keep_rate=0.7),
  )
  c.reducers.update(reducers)
  c.data.name = dataset
  c.data.text_len = text_len
  c.data.normalize = "clip"
  c.loss.vqa_reduction = "mean"  # PuMer's code: BCE over batch x answers
  # METER's fine-tuning: lr 5e-6 (VQA), x5 on the cross-modal layers and
  # x50 on the head (x10 for retrieval), 10% warm-up.
  c.optim.lr = 5e-6
  c.optim.warmup_steps = 1000
  c.optim.lr_mults.fusion = 5.0
  c.optim.lr_mults.head = 10.0 if task == "retrieval" else 50.0
  c.eval.split = "validation"
  if args.runlocal or args.shapes:
    c.batch_size = 8
    c.total_steps = 3
    c.checkpoint_every = 2
    c.log_every = 1
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 1
    c.eval.batch_size = 8
    c.model.update(dict(RUNLOCAL_MODEL, vocab_size=100,
                        max_position_embeddings=text_len + 2))
    # Tiny PuMer in blocks 0-1 of 2, so every variant has counts to check.
    reducers.update(
        pumer=reduce_config(method="pumer", layers=(0, 1), prune_ratio=0.2,
                            image_merge_ratio=0.2, text_merge_ratio=0.2),
        tome=reduce_config(method="tome", layers=(0, 1), tome_r=3),
        dynamicvit=reduce_config(method="dynamicvit", layers=(0, 1),
                                 keep_ratios=(0.7, 0.5)),
        smres=reduce_config(method="smres", smres_size=(48, 48)),
        evit=reduce_config(method="evit", layers=(0, 1), keep_rate=0.6))
    c.reducers.update(reducers)
    c.debug_checks = args.runlocal  # checkify the input values inside jit
  if args.shapes:
    if task != "vqa":
      raise ValueError("the shapes variant is VQA only: shapes_vqa asks "
                       "questions; use meter_vqa.py:shapes.")
    c.data.name = "shapes_vqa"
    c.data.data_dir = "runs/data"
    c.loss.vqa_reduction = "sum"  # as configs/vilt_shapes.py
    c.data.text_len = 16
    c.data.unlock()
    c.data.builder_config = dict(image_size=64, num_train=64,
                                 num_validation=32, num_test=32)
    c.data.lock()
    c.model.update(dict(vocab_size=VOCAB_SIZE,
                        max_position_embeddings=18, num_labels=len(ANSWERS)))
    c.eval.split = "test"
  if args.pretrain:
    if not args.shapes:
      raise ValueError("pretrain is the embedded task's recipe: use "
                       "meter_vqa.py:shapes,pretrain.")
    _shapes_pretrain(c, reducers, args.run)
  c.reduce = pick(reducers, args.method, "method")
  return c


def _shapes_pretrain(c, reducers, run):
  """checkpoints/meter_shapes' run `run` (`shapes.meter_recipe`), and its
  reducers."""
  shapes_recipe.meter_recipe(c, run)
  # PuMer in both fusion blocks, as the tiny ViLT's in two of its layers.
  reducers.update(
      pumer=reduce_config(method="pumer", layers=(0, 1), prune_ratio=0.2,
                          image_merge_ratio=0.2, text_merge_ratio=0.2,
                          clamp_merge=True),
      tome=reduce_config(method="tome", layers=(0, 1), tome_r=4),
      dynamicvit=reduce_config(method="dynamicvit", layers=(0, 1),
                               keep_ratios=(0.6, 0.4)),
      smres=reduce_config(method="smres", smres_size=(48, 48)),
      evit=reduce_config(method="evit", layers=(0, 1), keep_rate=0.6))
  c.reducers.update(reducers)
