"""benchmarks/gpu/run.sh --smoke: the GPU command runs, end to end, on CPU.

The GPU machine's image lacks TFDS, grain, ml_collections, array_record and
tensorboardX, and has no network: the smoke run imports none of them (a
`sitecustomize` makes each import fail), so the command that will run
there once, unattended, is the one tested here.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent
ABSENT = ("tensorflow_datasets", "grain", "ml_collections", "array_record",
          "tensorboardX")
BLOCKER = f'''
import importlib.abc, sys

class NotOnTheGpuImage(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in {ABSENT!r}:
      raise ImportError(name + " is not on the GPU image")

sys.meta_path.insert(0, NotOnTheGpuImage())
'''


@pytest.mark.slow
def test_gpu_command_smoke_run_without_the_missing_packages(tmp_path):
  site = tmp_path / "site"
  site.mkdir()
  (site / "sitecustomize.py").write_text(BLOCKER)
  out = tmp_path / "out"
  env = {**os.environ, "PYTHON": sys.executable,
         "PYTHONPATH": str(site)}
  run = subprocess.run(["bash", "benchmarks/gpu/run.sh", "--smoke", "--out",
                        str(out)], cwd=ROOT, env=env, capture_output=True,
                       text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  written = {p.name for p in out.iterdir()}
  assert {"summary.md", "train_step_mfu.json", "merge_scatter_cpu.json",
          "bench_tiny_cpu_float32.json",
          "recomputed_probs_cpu_float32.json"} <= written
  mfu = json.loads((out / "train_step_mfu.json").read_text())
  assert mfu["flops_per_step"] > 0 and mfu["step"]["median_s"] > 0
  bench = json.loads((out / "bench_tiny_cpu_float32.json").read_text())
  assert bench["peer"]["eager"]["throughput"] > 0
  assert all(r["activation_bytes"] for r in bench["results"])
  assert all(r["autograd_memory_bytes"] and r["train_throughput"]
             and r["crossover"]["crossover_batch"] != 0
             for r in bench["results"])


def test_the_blocker_blocks(tmp_path):
  """The sitecustomize above really hides the packages."""
  (tmp_path / "sitecustomize.py").write_text(BLOCKER)
  run = subprocess.run([sys.executable, "-c", "import ml_collections"],
                       env={**os.environ, "PYTHONPATH": str(tmp_path)},
                       capture_output=True, text=True)
  assert "not on the GPU image" in run.stderr
