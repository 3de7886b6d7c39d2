#!/usr/bin/env bash
# EfficientVLM on the embedded shapes_vqa dataset (CPU), from a shipped
# teacher: distilled half-depth student -> pruned (target 0.5) -> finalized,
# then one benchmark run that scores every stage on the test split (with
# bootstrap intervals) and times them in one process.
#   benchmarks/efficientvlm_shapes.sh vilt    # teacher checkpoints/vilt_shapes
#   benchmarks/efficientvlm_shapes.sh meter   # teacher checkpoints/meter_shapes
# Writes runs/evlm_MODEL_DIGEST/ (DIGEST: the teacher's weights, so a replaced
# teacher trains anew, beside) and benchmarks/results/efficientvlm_MODEL_shapes_*.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MODEL=${1:?usage: $0 vilt|meter}
case $MODEL in
  vilt) DATA="configs/vilt_shapes.py:pretrain"; LAST=1 ;;
  meter) DATA="configs/meter_vqa.py:shapes,pretrain"; LAST=0 ;;
  *) echo "model must be vilt or meter, got $MODEL" >&2; exit 2 ;;
esac
TEACHER=checkpoints/${MODEL}_shapes
DIGEST=$($PY -c "from pumer_jax.models import saved; print(saved.weights_digest('$TEACHER')[:8])")
R=runs/evlm_${MODEL}_$DIGEST
E="configs/efficientvlm.py:model=$MODEL"
common=(--config.progress=False --config.distill.teacher=$TEACHER)

$PY train.py --config $E,stage=distill --workdir $R/student "${common[@]}"
$PY train.py --config $E,stage=prune --workdir $R/pruned "${common[@]}" \
  --config.init_from=$R/student/model --config.prune.target=0.5
$PY -m pumer_jax.compress.finalize --workdir $R/pruned --out $R/final --overwrite
cp $R/final/pruning_report.json \
  benchmarks/results/efficientvlm_${MODEL}_shapes_pruning_report.json
$PY benchmarks/efficientvlm.py --name ${MODEL}_shapes --config "$DATA" \
  --teacher $TEACHER --student $R/student/model --pruned $R/final \
  --pumer_layers $LAST
