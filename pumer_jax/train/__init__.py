"""Training: one trainer per regime over shared state, step and loop.

- `state.py`: the train state, born sharded; the frozen teacher.
- `step.py`: the jitted, donated train step around a trainer's loss.
- `loop.py`: the loop (metrics, NaN stop, SIGTERM), the mesh for a config.
- `checkpoints.py`: the workdir, orbax checkpoints, resume, quarantine.
- `sharding.py`: the `('data', 'model')` mesh and logical axis rules.
- `optim.py`, `losses.py`, `metrics_writer.py`.
- `finetune.py`: a model with a reducer, optionally distilled (PuMer).
- `efficientvlm.py`: EfficientVLM's distill and prune stages.
"""
