"""The recipes of every shipped laboratory model: data, models, runs.

Two laboratories on the embedded `shapes_vqa` task (`lab`): "grid4", a 4x4
patch grid with every object inside one patch (`checkpoints/vilt_shapes`,
`checkpoints/meter_shapes`, judged on one test split), and "grid12",
ViLT-B/32's geometry, 145 image tokens with objects spanning patches
(`checkpoints/vilt_shapes_grid12`). Each model is a few runs of train.py,
each starting from the previous run's model: `vilt_recipe` and
`meter_recipe` set run `run` of them on a config (the configs' `pretrain`
and `run=N` variants; the checkpoints' READMEs give the commands and what
each reaches).
"""

from __future__ import annotations

import ml_collections

from pumer_jax.data.shapes_vocab import PATCH_CLASSES

# 64x64 images, 16x16 patches (16 image tokens): each object centred on a
# patch centre and small enough to lie inside it (radii 3.9 and 6.7 px), so
# one token carries its colour, shape and size; 2-5 objects (single-object
# scenes mixed into train), so most patches are background. A calm
# background, a dark outline. Position questions name one object and ask
# which half of the image it is in ("is the red circle left or right?").
PRETRAIN_DATA = dict(
    image_size=64, num_train=30_000, num_validation=500, num_test=1000,
    object_scale=1.1, texture="calm", train_min_objects=1, patch_aligned=16,
    outline=True, position_question="absolute")
# The main stage draws 40% of train questions as position questions first.
POSITION_SHARE = 0.4

# The first stage of both recipes: one object per scene and only position
# questions, at lr 1e-4. Trained from scratch on the mixed data, neither
# model ever leaves chance on position: reading one token's place needs the
# [CLS] to attend to that token, which gets no gradient while attention is
# spread, and an lr of 3e-4 or more never lets it start
# (benchmarks/results/shapes_position_plateau_lr.md). Alone and at 1e-4,
# position is learned in about 700 steps; the main stage keeps it. (METER
# needs its general run first: see meter_task.py.)
CURRICULUM_DATA = dict(num_train=10_000, min_objects=1, max_objects=1,
                       train_position_share=1.0)
# Only the init of the image position table and patch embedding differs
# from the defaults (`models/positions.py`).
IMAGE_INIT = dict(image_position_init="sincos2d", image_position_scale=0.5,
                  patch_init_std=0.05)


# The second laboratory, at ViLT-B/32's geometry
# (checkpoints/vilt_shapes_grid12): 96x96 images under 8x8 patches, a 12x12
# grid (144 patches + the image [CLS] = 145 image tokens, as ViLT-B/32 at
# 384x384). Objects anywhere (no patch alignment, no lattice), radii 7.9 and
# 13.7 px (object_scale 1.5), so each spans about 2x2 to 4x4 patches; 2-5
# per test scene cover about a quarter of the patches. Calm background,
# dark outline, one-object position questions, as the first laboratory.
GRID12_DATA = dict(
    image_size=96, num_train=50_000, num_validation=500, num_test=1000,
    object_scale=1.5, texture="calm", train_min_objects=1, patch_aligned=0,
    outline=True, position_question="absolute")
# Its ViLT: 12 layers (the paper's layer indices run as written), 64 wide,
# 4 heads, MLP 128, text of 16 tokens; the first laboratory's image init;
# a conv patch stem (`models/patch_stem.py`); a patch head on layer 4's
# output (a third of the depth, before any of the paper's reduction layers
# past 2 has merged much), trained with weight GRID12_PATCH_WEIGHT.
# The stem: with ViLT's linear patches the patch head told the shapes apart
# on 58.0% of the test split's object patches after 4100 steps (run 1 then
# 3101 of run 2); with the conv stem, from scratch, 88.2% after 1500 (colour
# 98-99% and size 92-94% both ways; benchmarks/shapes_patch_head.py,
# checkpoints/vilt_shapes_grid12_wip/evidence/, 2026-12-04).
GRID12_MODEL = dict(
    hidden_size=64, num_hidden_layers=12, num_attention_heads=4,
    intermediate_size=128, image_size=96, patch_size=8, input_size=(96, 96),
    patch_classes=len(PATCH_CLASSES), patch_head_layer=4, patch_stem="conv",
    **IMAGE_INIT)
# Trained on VQA answers alone (one per image), neither a 12x64 nor a 6x96
# model got past shape at chance in 2600 steps (54% overall): no patch
# shows a whole object, and one answer is a weak signal for assembling one.
# The per-patch classes (`data/shapes_patches.py`) stand in for the
# supervised visual pretraining (ViT on ImageNet-21k) a real ViLT starts from.
# With them (checkpoints/vilt_shapes_grid12_wip, step 3101 of run 2): colour
# 52%, size 84%, shape and position still at chance; run 1's curriculum did
# not learn position with the patch term on (52.5%; 99.4% without it).
GRID12_PATCH_WEIGHT = 1.0
# Each laboratory's data, by the name the configs' `lab` variant takes.
LAB_DATA = {"grid4": PRETRAIN_DATA, "grid12": GRID12_DATA}


def set_data(c: ml_collections.ConfigDict, lab: str = "grid4",
             **changes) -> None:
  """Sets `c.data.builder_config` to the lab's data with `changes`."""
  if lab not in LAB_DATA:
    raise ValueError(f"lab={lab!r} must be one of {sorted(LAB_DATA)}.")
  c.data.unlock()
  c.data.builder_config = dict(LAB_DATA[lab], **changes)
  c.data.lock()


def check_run(run: int, runs: dict[int, str]) -> None:
  """Raises ValueError unless `run` is one of a recipe's `runs`."""
  if run not in runs:
    named = ", ".join(f"{k} ({v})" for k, v in runs.items())
    raise ValueError(f"run={run} must be one of the recipe's runs: "
                     f"{named}.")


def set_curriculum(c: ml_collections.ConfigDict, *, stop_at: int,
                   lab: str = "grid4") -> None:
  """The position stage: CURRICULUM_DATA, lr 1e-4, stopped at `stop_at`."""
  set_data(c, lab, **CURRICULUM_DATA)
  set_schedule(c, total_steps=10_000, stop_at=stop_at, lr=1e-4, warmup=100)


def set_schedule(c: ml_collections.ConfigDict, *, total_steps: int,
                 stop_at: int = 0, lr: float = 1e-3, warmup: int = 300
                 ) -> None:
  """AdamW (weight decay 0.01, clip 1), batch 64, cosine decay."""
  c.batch_size = 64
  c.checkpoint_every = 500
  c.total_steps = total_steps
  c.stop_at = stop_at
  c.optim.lr = lr
  c.optim.decay = "cosine"
  c.optim.warmup_steps = warmup
  c.optim.weight_decay = 0.01


# ----------------------------------------------------------------------------
# ViLT: both laboratories.
# ----------------------------------------------------------------------------

# The first laboratory's ViLT: 4 layers, 128 wide, 16x16 patches on 64x64.
GRID4_MODEL = dict(hidden_size=128, num_hidden_layers=4,
                   num_attention_heads=4, intermediate_size=256,
                   image_size=64, patch_size=16, input_size=(64, 64),
                   **IMAGE_INIT)
# Where each recipe's earlier runs write their model, read by the next run.
VILT_RUN_MODELS = {"grid4": {1: "runs/shapes_pretrain_s1/model"},
                   "grid12": {1: "runs/shapes_grid12_s1/model",
                              2: "runs/shapes_grid12_s2/model"}}
VILT_RUNS = {"grid4": {1: "the position curriculum",
                       2: "the main run, the default"},
             "grid12": {1: "the general run", 2: "the position curriculum",
                        3: "the final mixed run, the default"}}


def vilt_recipe(c: ml_collections.ConfigDict, lab: str, run: int = 0) -> None:
  """Run `run` of the lab's shipped ViLT (0: its last, the default; see
  checkpoints/vilt_shapes*/README).

  grid4: run 1, the position curriculum, 1000 steps at lr 1e-4 of
  one-object scenes; run 2 (from run 1's model), the mixed data with 40%
  position questions, 5500 steps of a 10k-step cosine schedule at lr 1e-3.
  grid12 (GRID12_MODEL on GRID12_DATA), METER's order: run 1, the mixed
  data from scratch, a 6000-step cosine at lr 5e-4 (the 12-layer model's),
  its patch head trained (GRID12_PATCH_WEIGHT); run 2, the position
  curriculum without the patch term (with it, the curriculum stayed at
  chance: 52.5% where the same run without it reached 99.4%); run 3, the
  mixed data again, 1500 steps at lr 1e-4 with the patch term.
  """
  if lab not in LAB_DATA:
    raise ValueError(f"lab={lab!r} must be one of {sorted(LAB_DATA)}.")
  runs = VILT_RUNS[lab]
  run = run or max(runs)
  check_run(run, runs)
  if lab == "grid4":
    c.model.update(GRID4_MODEL)
    if run == 1:
      set_curriculum(c, stop_at=1000)
      return
    c.init_from = VILT_RUN_MODELS[lab][1]
    set_data(c, lab, train_position_share=POSITION_SHARE)
    set_schedule(c, total_steps=10_000, stop_at=5500)
    return
  c.model.update(GRID12_MODEL)
  c.loss.patch_weight = GRID12_PATCH_WEIGHT
  if run == 1:
    set_data(c, lab, train_position_share=POSITION_SHARE)
    set_schedule(c, total_steps=6000, lr=5e-4, warmup=300)
  elif run == 2:
    c.init_from = VILT_RUN_MODELS[lab][1]
    set_curriculum(c, stop_at=1000, lab=lab)
    c.loss.patch_weight = 0.0
  else:
    c.init_from = VILT_RUN_MODELS[lab][2]
    set_data(c, lab, train_position_share=POSITION_SHARE)
    set_schedule(c, total_steps=1500, lr=1e-4, warmup=100)


# ----------------------------------------------------------------------------
# METER: the first laboratory.
# ----------------------------------------------------------------------------

# The shipped tiny METER: 128 wide everywhere, every depth 2 (even, so
# EfficientVLM can halve it), 16 image tokens as the shipped ViLT.
METER_MODEL = dict(
    vision_hidden_size=128, vision_num_layers=2, vision_num_heads=4,
    vision_intermediate_size=256, image_size=64, patch_size=16,
    text_hidden_size=128, text_num_layers=2, text_num_heads=4,
    text_intermediate_size=256, hidden_size=128, num_fusion_layers=2,
    num_attention_heads=4, intermediate_size=256, input_size=(64, 64),
    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    **IMAGE_INIT)
METER_RUN_MODELS = {1: "runs/meter_shapes_s1/model",
                    2: "runs/meter_shapes_s2/model"}
METER_RUNS = {1: "the general run", 2: "the position curriculum",
              3: "the final mixed run, the default"}


def meter_recipe(c: ml_collections.ConfigDict, run: int) -> None:
  """Run `run` of checkpoints/meter_shapes, on the first laboratory's data.

  Run 1: the mixed data, a 3000-step cosine run at lr 3e-4, which learns
  every question type but position. Run 2 (from run 1's model): the
  position curriculum, 1000 steps at lr 1e-4 of one-object scenes. Run 3
  (the default, from run 2's model): the mixed data with 40% position
  questions, 1500 steps at lr 1e-4, so the other types come back while
  position stays. lr 3e-4, not the ViLT's 1e-3: at 1e-3 the post-LN text
  and fusion layers stalled (loss 1.36 at step 4460, colour at chance).
  Unlike the ViLT, METER cannot start with the curriculum: from scratch,
  the curriculum then 3000 mixed steps at 3e-4 stalled at loss 1.12.
  """
  check_run(run, METER_RUNS)
  c.model.update(METER_MODEL)
  if run == 1:
    set_data(c)
    set_schedule(c, total_steps=3000, lr=3e-4)
  elif run == 2:
    c.init_from = METER_RUN_MODELS[1]
    set_curriculum(c, stop_at=1000)
  else:
    c.init_from = METER_RUN_MODELS[2]
    set_data(c, train_position_share=POSITION_SHARE)
    set_schedule(c, total_steps=1500, lr=1e-4, warmup=100)
  c.optim.lr_mults.fusion = 1.0
  c.optim.lr_mults.head = 1.0
  c.log_every = 20
  c.eval.batch_size = 250
