"""The embedded task's shipped-model recipe: data and schedule, ViLT and METER.

`checkpoints/vilt_shapes` and `checkpoints/meter_shapes` are trained on the
same `shapes_vqa` data, so a reducer is judged on one test split for both
(see their READMEs for what each reaches and why the data are so).
"""

from __future__ import annotations

import ml_collections

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
# 4 heads, MLP 128, text of 16 tokens; the first laboratory's image init.
GRID12_MODEL = dict(
    hidden_size=64, num_hidden_layers=12, num_attention_heads=4,
    intermediate_size=128, image_size=96, patch_size=8, input_size=(96, 96),
    **IMAGE_INIT)
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


def check_stage(stage: int, stages: dict[int, str]) -> None:
  """Raises ValueError unless `stage` is one of a recipe's `stages`."""
  if stage not in stages:
    named = ", ".join(f"{k} ({v})" for k, v in stages.items())
    raise ValueError(f"stage={stage} must be one of the recipe's runs: "
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
