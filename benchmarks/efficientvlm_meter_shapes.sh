#!/usr/bin/env bash
# EfficientVLM on METER (configs/meter_vqa.py:shapes model, every depth even)
# on the embedded dataset at full size (10k train questions): teacher ->
# student -> pruned (target 0.5) -> finalized, each evaluated.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
R=runs/evlm_meter
D="--config.data.builder_config.num_train=10000 --config.data.builder_config.num_validation=500 --config.data.builder_config.num_test=1000 --config.batch_size=64 --config.eval.batch_size=250 --config.progress=False --config.log_every=20 --config.checkpoint_every=200"
$PY train.py --config configs/meter_vqa.py:shapes --workdir $R/teacher $D --config.total_steps=800 --config.optim.warmup_steps=50
$PY eval.py --config configs/meter_vqa.py:shapes --workdir $R/teacher $D --config.total_steps=800 --config.optim.warmup_steps=50 --config.eval.methods=none
E="configs/efficientvlm.py:model=meter"
$PY train.py --config $E,stage=distill --workdir $R/student $D --config.distill.teacher=$R/teacher/model --config.total_steps=400
$PY eval.py --config $E,stage=distill --workdir $R/student $D --config.distill.teacher=$R/teacher/model --config.total_steps=400 --config.eval.methods=none
$PY train.py --config $E,stage=prune --workdir $R/pruned $D --config.distill.teacher=$R/teacher/model --config.init_from=$R/student/model --config.total_steps=600 --config.prune.warmup_steps=300 --config.prune.freeze_step=540
$PY -m pumer_jax.compress.finalize --workdir $R/pruned --out $R/final --overwrite
$PY eval.py --config $E,stage=prune --workdir $R/pruned $D --config.distill.teacher=$R/teacher/model --config.init_from=$R/student/model --config.total_steps=600 --config.prune.warmup_steps=300 --config.prune.freeze_step=540 --config.eval.checkpoint=$R/final --config.eval.methods=none
