r"""EfficientVLM: distill a half-depth student, then prune it with
hard-concrete gates to one global sparsity target (DESIGN 4.5, 4.6).

On the embedded shapes_vqa dataset (CPU), from the shipped unreduced
teacher, on its data (benchmarks/efficientvlm_shapes.sh runs the chain):

  python train.py --config configs/efficientvlm.py:model=vilt,stage=distill \
      --config.distill.teacher=checkpoints/vilt_shapes \
      --workdir runs/evlm_student
  python train.py --config configs/efficientvlm.py:model=vilt,stage=prune \
      --config.distill.teacher=checkpoints/vilt_shapes \
      --config.init_from=runs/evlm_student/model --config.prune.target=0.5 \
      --workdir runs/evlm_pruned

`model=meter` does the same for METER (teacher: checkpoints/meter_shapes,
configs/meter_vqa.py:shapes,pretrain, whose every module has an even
depth). Variants: model=vilt|meter, stage=distill|prune (the trainer's
stage, config key `stage`), runlocal (a few steps).
"""

import importlib.util
import pathlib

from pumer_jax.configs.base import parse_arg, reduce_config


def _sibling(name: str, arg: str):
  path = pathlib.Path(__file__).parent / f"{name}.py"
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def get_config(arg=None):
  args = parse_arg(arg, model="vilt", stage="distill", runlocal=False)
  if args.model not in ("vilt", "meter"):
    raise ValueError(f"config variant model={args.model!r} is not one of "
                     "['meter', 'vilt'].")
  if args.stage not in ("distill", "prune"):
    raise ValueError(f"config variant stage={args.stage!r} is not one of "
                     "['distill', 'prune'].")
  # The teacher's task and data: the architecture comes from the checkpoints.
  if args.model == "vilt":
    c = _sibling("vilt_shapes", "runlocal" if args.runlocal else "pretrain")
  else:
    c = _sibling("meter_vqa", "shapes" if args.runlocal else "shapes,pretrain")
  c.init_from = ""  # the student starts from the teacher (distill.teacher)
  c.stop_at = 0
  c.stage = args.stage
  # EfficientVLM's KD: task, logits, attention and hidden states, equally.
  c.distill.update(dict(task=1.0, logits=1.0, attn=1.0, hidden=1.0))
  c.total_steps = 600 if args.stage == "distill" else 1000
  c.checkpoint_every = 200
  c.log_every = 20
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 50
  c.prune.warmup_steps = c.total_steps // 2  # the target ramps, then holds
  c.prune.freeze_step = c.total_steps * 9 // 10  # then the final masks train
  # A run of 1000 steps, not the paper's tens of thousands: the Lagrangian
  # needs a faster rate than the default 0.01 to reach its target in time.
  c.prune.reg_lr = 0.05
  # The student has half the layers: reducers move into them.
  last = 1 if args.model == "vilt" else 0
  c.reducers.pumer = reduce_config(method="pumer", layers=(last,),
                                   prune_ratio=0.2, image_merge_ratio=0.2,
                                   text_merge_ratio=0.2, clamp_merge=True)
  c.reducers.tome = reduce_config(method="tome", layers=(last,), tome_r=8)
  c.eval.methods = "none,pumer"
  if args.runlocal:
    c.total_steps = 4
    c.checkpoint_every = 2
    c.log_every = 1
    c.optim.warmup_steps = 1
    c.prune.warmup_steps = 2
    c.prune.freeze_step = 3
  return c
