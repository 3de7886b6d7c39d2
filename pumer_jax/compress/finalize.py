"""EfficientVLM stage 3: slice a pruned run into a physically smaller model.

The gates' deterministic masks (per layer, the `round(n - sum P(z != 0))`
gates with the smallest `log_alpha` are off) pick the heads and FFN units
each layer keeps; their weights are sliced out, and the config records the
per-layer sizes (`pruned_sizes`). A layer left with no heads (no units)
keeps only its output bias. The result is an ordinary model checkpoint:
eval.py, bench, init_from and every token reducer take it as they are.

  python -m pumer_jax.compress.finalize --workdir runs/evlm_pruned --out ckpt/evlm
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
from typing import Any

import jax
import numpy as np

from pumer_jax.compress import gates as gates_lib
from pumer_jax.models import param_count, saved

REPORT_FILE = "pruning_report.json"
GATES_DIR = "gates"  # where a pruning run keeps its gate state (train/efficientvlm.py)


def slice_params(config: Any, params: Any, masks: Any) -> tuple[Any, Any]:
  """`(sliced config, sliced params)`: what the 0/1 `masks` keep.

  Outputs equal the unsliced model run with `gates=masks`.
  """
  if config.pruned_sizes:
    raise ValueError("this model is already sliced (config.pruned_sizes is "
                     "set); finalize an unsliced pruning run.")
  params = jax.tree.map(np.asarray, jax.device_get(params))
  params = copy.deepcopy(params)
  rows = []
  for group in gates_lib.gate_groups(config):
    mask = np.asarray(masks[group.module][group.kind])  # [layers, n]
    sizes = []
    for i, path in enumerate(group.paths):
      keep = np.flatnonzero(mask[i] > 0.5)
      module = gates_lib.module_at(params, path)
      if not len(keep):  # nothing left: the output bias alone
        for name in ("fc1", "query", "key", "value"):
          module.pop(name, None)
        output = "fc2" if group.kind == "units" else "out"
        module[output] = {"bias": module[output]["bias"]}
      elif group.kind == "units":
        module["fc1"]["kernel"] = module["fc1"]["kernel"][:, keep]
        module["fc1"]["bias"] = module["fc1"]["bias"][keep]
        module["fc2"]["kernel"] = module["fc2"]["kernel"][keep]
      else:
        head_dim = module["query"]["kernel"].shape[1] // group.size
        cols = (keep[:, None] * head_dim + np.arange(head_dim)).ravel()
        for name in ("query", "key", "value"):
          for leaf, value in module[name].items():
            module[name][leaf] = value[..., cols]
        module["out"]["kernel"] = module["out"]["kernel"][cols]
      sizes.append(len(keep))
    rows.append((group.module, group.kind, tuple(sizes)))
  return config.replace(pruned_sizes=tuple(rows)), params


def pruning_report(config: Any, params: Any, sliced_params: Any,
                   layout: gates_lib.GateLayout, masks: Any,
                   log_alpha: Any) -> dict[str, Any]:
  """Per module and layer, what was kept; parameters before and after."""
  layers, split = [], {}
  prunable_after = 0
  for group, per_gate in zip(layout.groups, layout.per_gate):
    mask = np.asarray(masks[group.module][group.kind])
    modality = gates_lib.MODALITY[group.module]
    entry = split.setdefault(modality, {"prunable_before": 0,
                                        "prunable_after": 0})
    for i, count in enumerate(per_gate):
      kept = int((mask[i] > 0.5).sum())
      layers.append(dict(module=group.module, kind=group.kind, layer=i,
                         kept=kept, total=group.size))
      entry["prunable_before"] += group.size * count
      entry["prunable_after"] += kept * count
      prunable_after += kept * count
  for entry in split.values():
    entry["sparsity"] = 1.0 - entry["prunable_after"] / max(
        entry["prunable_before"], 1)
  before, after = param_count(params), param_count(sliced_params)
  prunable = layout.prunable_size()
  return dict(
      parameters_before=before, parameters_after=after,
      prunable_before=prunable, prunable_after=prunable_after,
      prunable_sparsity=1.0 - prunable_after / prunable,
      total_sparsity=1.0 - after / before,
      expected_sparsity=float(layout.expected_sparsity(log_alpha)),
      modality_split=split, layers=layers,
      pruned_sizes=[list(r) for r in config.pruned_sizes],
  )


def finalize(workdir: str | pathlib.Path, out: str | pathlib.Path, *,
             overwrite: bool = False) -> dict[str, Any]:
  """Slices `workdir`'s pruned model into `out`; returns the report."""
  workdir = pathlib.Path(workdir)
  gate_state = gates_lib.load_gate_state(workdir / GATES_DIR)
  model, variables = saved.load_model(workdir / "model")
  params = variables["params"]
  layout = gates_lib.GateLayout.build(model.config, params)
  log_alpha = gate_state["log_alpha"]
  masks = jax.device_get(gates_lib.deterministic_gates(log_alpha))
  sliced_config, sliced = slice_params(model.config, params, masks)
  report = pruning_report(sliced_config, params, sliced, layout, masks,
                          log_alpha)
  out = saved.save_model(out, sliced_config, sliced, overwrite=overwrite)
  (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
  return report


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="python -m pumer_jax.compress.finalize",
      description="Slice an EfficientVLM pruning run into a smaller model.")
  parser.add_argument("--workdir", required=True,
                      help="the pruning run (holds model/ and gates/)")
  parser.add_argument("--out", required=True, help="output model dir")
  parser.add_argument("--overwrite", action="store_true",
                      help="replace a non-empty --out")
  args = parser.parse_args(argv)
  report = finalize(args.workdir, args.out, overwrite=args.overwrite)
  print(f"wrote {args.out}: {report['parameters_after']:,} of "
        f"{report['parameters_before']:,} parameters; prunable sparsity "
        f"{report['prunable_sparsity']:.3f}; split "
        + ", ".join(f"{k} {v['sparsity']:.3f}"
                    for k, v in report["modality_split"].items()))


if __name__ == "__main__":
  main()
