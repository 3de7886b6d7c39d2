r"""ViLT on the embedded `shapes_vqa` dataset: CPU-sized, trains in minutes.

A 4-layer, 128-wide ViLT with 16x16 patches on 96x96 images (36 patches +
CLS), questions of at most 16 tokens. The dataset generates itself (no
download) into data.data_dir on first use.

  python train.py --config configs/vilt_shapes.py --workdir runs/shapes
  python eval.py  --config configs/vilt_shapes.py --workdir runs/shapes

PuMer with distillation from the unreduced run, starting from its weights:

  python train.py --config configs/vilt_shapes.py:method=pumer \
      --config.distill.teacher=runs/shapes/model \
      --config.init_from=runs/shapes/model --workdir runs/shapes_pumer

Variants (after the colon): method=none|pumer|tome|dynamicvit|smres,
runlocal (a few steps, for a smoke test), pretrain,stage=1 and pretrain (the
two runs of the model shipped in checkpoints/vilt_shapes, whose data `pretrain`
names: see its README). `make demo` runs the whole sequence; see README.md for
the accuracy it reaches.
"""

from pumer_jax.configs import shapes
from pumer_jax.configs.base import base_config, parse_arg, pick, reduce_config
from pumer_jax.data.shapes_vocab import ANSWERS, VOCAB_SIZE

PUMER = dict(method="pumer", layers=(1, 2), prune_ratio=0.2,
             image_merge_ratio=0.2, text_merge_ratio=0.2)
REDUCERS = dict(
    none=reduce_config(),
    pumer=reduce_config(**PUMER),
    tome=reduce_config(method="tome", layers=(1, 2), tome_r=10),
    dynamicvit=reduce_config(method="dynamicvit", layers=(1, 2),
                             keep_ratios=(0.6, 0.4)),
    smres=reduce_config(method="smres", smres_size=(64, 64)),
)


def get_config(arg=None):
  args = parse_arg(arg, method="none", runlocal=False, pretrain=False,
                   stage=2, lab="grid4")
  c = base_config()
  c.task = "vqa"
  c.batch_size = 64
  c.total_steps = 1200
  c.log_every = 20
  c.checkpoint_every = 200

  c.model.update(dict(
      vocab_size=VOCAB_SIZE, max_position_embeddings=16,
      hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
      intermediate_size=256, image_size=96, patch_size=16,
      num_labels=len(ANSWERS), input_size=(96, 96)))
  c.reduce = pick(REDUCERS, args.method, "method")
  c.reducers.update(REDUCERS)

  c.data.name = "shapes_vqa"
  c.data.data_dir = "runs/data"
  c.data.text_len = 16
  c.data.unlock()
  c.data.builder_config = dict(image_size=96, num_train=10_000,
                               num_validation=500, num_test=1000)
  c.data.lock()

  c.optim.lr = 1e-3  # 2e-3 diverged (NaN) within a 1200-step schedule
  c.optim.warmup_steps = 100
  c.optim.weight_decay = 0.01
  c.optim.lr_mults.head = 1.0

  c.eval.methods = "none,pumer,tome"
  c.eval.split = "test"
  c.eval.batch_size = 250

  if args.pretrain and args.lab == "grid12":
    _pretrain_grid12(c, args.stage)
  elif args.pretrain:
    _pretrain(c, args.stage)

  if args.runlocal:
    c.debug_checks = True  # checkify the input values inside jit
    c.total_steps = 4
    c.log_every = 1
    c.checkpoint_every = 2
    c.optim.warmup_steps = 1
    c.batch_size = 8
    c.eval.batch_size = 50
    c.data.builder_config.update(dict(num_train=64, num_validation=50,
                                      num_test=100))
  return c


STAGE1_MODEL = "runs/shapes_pretrain_s1/model"


def _pretrain(c, stage):
  """A ViLT that reads the image (see checkpoints/vilt_shapes/README.md).

  The data and schedules are `pumer_jax.configs.shapes` (shared with
  meter_vqa.py:shapes,pretrain). Stage 1 (`pretrain,stage=1`): the position
  curriculum, 1000 steps at lr 1e-4 of one-object scenes. Stage 2
  (`pretrain`, the default, from stage 1's model at STAGE1_MODEL): the
  mixed data with 40% position questions, 5500 steps of a 10k-step cosine
  schedule (stop_at).
  """
  shapes.check_stage(stage, {1: "the position curriculum",
                             2: "the main run, the default"})
  c.model.update(dict(hidden_size=128, num_hidden_layers=4,
                      num_attention_heads=4, intermediate_size=256,
                      image_size=64, patch_size=16, input_size=(64, 64),
                      **shapes.IMAGE_INIT))
  if stage == 1:
    shapes.set_curriculum(c, stop_at=1000)
  else:  # from stage 1's weights
    c.init_from = STAGE1_MODEL
    shapes.set_data(c, train_position_share=shapes.POSITION_SHARE)
    shapes.set_schedule(c, total_steps=10_000, stop_at=5500)


GRID12_STAGE1_MODEL = "runs/shapes_grid12_s1/model"


def _pretrain_grid12(c, stage):
  """The second laboratory's ViLT (checkpoints/vilt_shapes_grid12/README.md).

  `pumer_jax.configs.shapes`' GRID12_MODEL on GRID12_DATA. Stage 1
  (`lab=grid12,pretrain,stage=1`): the position curriculum, 1000 steps at lr
  1e-4 of one-object scenes, as the first laboratory's. Stage 2
  (`lab=grid12,pretrain`, from stage 1's model at GRID12_STAGE1_MODEL): the
  mixed data with 40% position questions, a 6000-step cosine schedule at
  lr 5e-4 (the 12-layer model's; the 4-layer one's is 1e-3).
  """
  shapes.check_stage(stage, {1: "the position curriculum",
                             2: "the main run, the default"})
  c.model.update(shapes.GRID12_MODEL)
  if stage == 1:
    shapes.set_curriculum(c, stop_at=1000, lab="grid12")
  else:
    c.init_from = GRID12_STAGE1_MODEL
    shapes.set_data(c, "grid12", train_position_share=shapes.POSITION_SHARE)
    shapes.set_schedule(c, total_steps=6000, lr=5e-4, warmup=300)
