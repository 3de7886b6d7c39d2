r"""EfficientVLM: distill a half-depth student, then prune it with
hard-concrete gates to one global sparsity target (DESIGN 4.5, 4.6).

On the embedded shapes_vqa dataset (CPU), from a trained unreduced teacher:

  python train.py --config configs/vilt_shapes.py --workdir runs/teacher
  python train.py --config configs/efficientvlm.py:model=vilt,stage=distill \
      --config.teacher_checkpoint=runs/teacher/model --workdir runs/evlm_student
  python train.py --config configs/efficientvlm.py:model=vilt,stage=prune \
      --config.teacher_checkpoint=runs/teacher/model \
      --config.init_checkpoint=runs/evlm_student/model --config.prune.target=0.5 \
      --workdir runs/evlm_pruned

`model=meter` does the same for METER (teacher: configs/meter_vqa.py:shapes,
whose every module has an even depth). Variants: model=vilt|meter,
stage=distill|prune, runlocal (a few steps).
"""

import importlib.util
import pathlib

from pumer_jax.config_defaults import parse_arg


def _sibling(name: str, arg: str):
  path = pathlib.Path(__file__).parent / f"{name}.py"
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def get_config(arg=None):
  args = parse_arg(arg, model="vilt", stage="distill", runlocal=False)
  if args.model not in ("vilt", "meter"):
    raise ValueError(f"model={args.model!r} must be vilt or meter.")
  if args.stage not in ("distill", "prune"):
    raise ValueError(f"stage={args.stage!r} must be distill or prune.")
  # The teacher's task and data: the architecture comes from the checkpoints.
  c = (_sibling("vilt_shapes", "runlocal" if args.runlocal else "")
       if args.model == "vilt" else _sibling("meter_vqa", "shapes"))
  c.stage = args.stage
  c.total_steps = 600
  c.checkpoint_every = 200
  c.log_every = 20
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 50
  c.eval.methods = "none,pumer"
  c.prune.warmup_steps = 300  # the target ramps over half the run
  c.prune.freeze_step = 500  # the last 100 steps train the final masks
  if args.runlocal:
    c.total_steps = 4
    c.checkpoint_every = 2
    c.log_every = 1
    c.optim.warmup_steps = 1
    c.prune.warmup_steps = 2
    c.prune.freeze_step = 3
  return c
