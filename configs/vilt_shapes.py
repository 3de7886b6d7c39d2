r"""ViLT on the embedded `shapes_vqa` dataset: CPU-sized, trains in minutes.

Without a variant: a quick 4-layer, 128-wide ViLT with 16x16 patches on
96x96 images (36 patches + CLS) and the dataset's default scenes, questions
of at most 16 tokens: a model to try the commands on, not a shipped one (the
`pretrain` variants below train those). The dataset generates itself (no
download) into data.data_dir on first use.

  python train.py --config configs/vilt_shapes.py --workdir runs/shapes
  python eval.py  --config configs/vilt_shapes.py --workdir runs/shapes

PuMer with distillation from the unreduced run, starting from its weights:

  python train.py --config configs/vilt_shapes.py:method=pumer \
      --config.distill.teacher=runs/shapes/model \
      --config.init_from=runs/shapes/model --workdir runs/shapes_pumer

Variants (after the colon): method=NAME (a reducer of REDUCERS), runlocal
(a few steps, for a smoke test), and the shipped models' recipes
(`pumer_jax/configs/shapes.py`): pretrain,run=1 and pretrain (the two runs of
checkpoints/vilt_shapes, whose data `pretrain` names), lab=grid12,pretrain,run=1,
run=2 and lab=grid12,pretrain (the three of checkpoints/vilt_shapes_grid12).
`pretrain` alone is a recipe's last run. See their READMEs for the accuracy
they reach.
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
    evit=reduce_config(method="evit", layers=(1, 2), keep_rate=0.6),
)


def get_config(arg=None):
  args = parse_arg(arg, method="none", runlocal=False, pretrain=False,
                   run=0, lab="grid4")
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

  if args.pretrain:
    shapes.vilt_recipe(c, args.lab, args.run)
  elif args.lab != "grid4" or args.run:
    raise ValueError("lab= and run= choose a shipped model's recipe: add "
                     "`pretrain` (e.g. vilt_shapes.py:lab=grid12,pretrain).")

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
