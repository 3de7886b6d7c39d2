#!/usr/bin/env bash
# EfficientVLM on the embedded shapes_vqa dataset (CPU): teacher -> distilled
# student -> pruned (target 0.5) -> finalized, each stage evaluated, then one
# benchmark run over all of them. Writes runs/evlm/ and benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
R=runs/evlm
E="configs/efficientvlm.py:model=vilt"
common="--config.progress=False"

$PY train.py --config configs/vilt_shapes.py --workdir $R/teacher $common
$PY eval.py --config configs/vilt_shapes.py --workdir $R/teacher $common \
  --config.eval.methods=none
$PY train.py --config $E,stage=distill --workdir $R/student $common \
  --config.distill.teacher=$R/teacher/model
$PY eval.py --config $E,stage=distill --workdir $R/student $common \
  --config.distill.teacher=$R/teacher/model --config.eval.methods=none
$PY train.py --config $E,stage=prune --workdir $R/pruned $common \
  --config.distill.teacher=$R/teacher/model \
  --config.init_from=$R/student/model --config.prune.target=0.5
$PY -m pumer_jax.compress.finalize --workdir $R/pruned --out $R/final --overwrite
$PY eval.py --config $E,stage=prune --workdir $R/pruned $common \
  --config.distill.teacher=$R/teacher/model \
  --config.init_from=$R/student/model \
  --config.eval.checkpoint=$R/final --config.eval.methods=none,pumer
$PY benchmarks/efficientvlm.py --teacher $R/teacher/model \
  --student $R/student/model --pruned $R/final
