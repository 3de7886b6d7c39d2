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
# background, a dark outline. Position questions are relative ("is the A
# left or right of the B?"); neither model learns them, nor the absolute
# form (`position_question="absolute"`): see checkpoints/vilt_shapes.
PRETRAIN_DATA = dict(
    image_size=64, num_train=30_000, num_validation=500, num_test=1000,
    object_scale=1.1, texture="calm", train_min_objects=1, patch_aligned=16,
    outline=True)
# Only the init of the image position table and patch embedding differs
# from the defaults (`models/positions.py`).
IMAGE_INIT = dict(image_position_init="sincos2d", image_position_scale=0.5,
                  patch_init_std=0.05)


def set_data(c: ml_collections.ConfigDict, **changes) -> None:
  """Sets `c.data.builder_config` to PRETRAIN_DATA with `changes`."""
  c.data.unlock()
  c.data.builder_config = dict(PRETRAIN_DATA, **changes)
  c.data.lock()


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
