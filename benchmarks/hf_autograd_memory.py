"""What PyTorch's autograd keeps in the paper's memory protocol, for the
Hugging Face ViLT, beside what this project's autograd protocol counts.

PuMer's `cli/bench.py` measures in `eval()` mode without `torch.no_grad()`,
so autograd saves tensors for a backward pass. This script runs
`transformers.ViltForQuestionAnswering` (random weights, ViLT-B/32 at
384x384, VQA text 32) that way under `torch.autograd.graph.saved_tensors_hooks`
and sums the bytes of every saved tensor's storage, once per storage,
weights excluded: the activations autograd holds at the end of the forward,
read without an allocator. It prints them beside the unreduced model's
`autograd_residual_bytes` from a bench report (the JAX residuals of the
same shapes), as a cross-check of the protocol. Unreduced only: Hugging
Face's ViLT has no reducer.

  python benchmarks/hf_autograd_memory.py \
      --report benchmarks/results/protocols/bench_vilt_vqa_cpu_float32.json
"""

from __future__ import annotations

import argparse
import json
import pathlib

from pumer_jax.bench import presets
from pumer_jax.bench.hf_peer import hf_inputs, hf_model


def saved_activation_bytes(model, inputs) -> tuple[int, int]:
  """(bytes, tensors) that autograd saves in one forward, weights excluded."""
  import torch

  weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
  storages: dict[int, int] = {}

  def pack(tensor):
    storage = tensor.untyped_storage()
    if storage.data_ptr() not in weights:
      storages[storage.data_ptr()] = storage.nbytes()
    return tensor

  with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
    out = model(**inputs)  # eval(), no torch.no_grad(): the paper's protocol
  del out
  return sum(storages.values()), len(storages)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--report", required=True,
                      help="a bench JSON with the autograd protocol")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  report = json.loads(pathlib.Path(args.report).read_text())
  preset = presets.PRESETS[report["preset"]]
  batch = report["batch"]["memory"]
  model = hf_model(preset.model)
  inputs = hf_inputs(batch, report["text_len"], tuple(report["image_size"]),
                     preset.model.vocab_size)
  hf_bytes, tensors = saved_activation_bytes(model, inputs)
  none = next(r for r in report["results"] if r["name"] == "none")
  jax_bytes = none["autograd_residual_bytes"]
  result = dict(preset=report["preset"], batch=batch,
                hf_saved_bytes=hf_bytes, hf_saved_tensors=tensors,
                jax_residual_bytes=jax_bytes,
                jax_over_hf=jax_bytes / hf_bytes if hf_bytes else None)
  print(f"{report['preset']} batch {batch}: PyTorch autograd saves "
        f"{hf_bytes / 2**20:.1f} MiB in {tensors} storages (weights "
        f"excluded); the JAX autograd protocol keeps "
        f"{jax_bytes / 2**20:.1f} MiB (ratio {result['jax_over_hf']:.2f}).")
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
  return result


if __name__ == "__main__":
  main()
