"""Training metrics: JSONL and TensorBoard in the workdir, a progress bar."""

from __future__ import annotations

import json
import pathlib

import tqdm


class MetricsWriter:
  """Writes `metrics.jsonl` and TensorBoard events; shows a progress bar."""

  def __init__(self, workdir: pathlib.Path, *, enabled: bool = True,
               total: int = 0, initial: int = 0, progress: bool = True):
    self.enabled = enabled
    self._jsonl = None
    self._tb = None
    self._bar = None
    if not enabled:
      return
    self._jsonl = open(pathlib.Path(workdir) / "metrics.jsonl", "a")
    from tensorboardX import SummaryWriter
    self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))
    if progress:
      self._bar = tqdm.tqdm(total=total, initial=initial, unit="step",
                            dynamic_ncols=True)

  def write(self, step: int, values: dict[str, float]) -> None:
    if not self.enabled:
      return
    self._jsonl.write(json.dumps({"step": step, **values}) + "\n")
    self._jsonl.flush()
    for key, value in values.items():
      self._tb.add_scalar(f"train/{key}", value, step)
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
      self._bar.set_postfix(loss=f"{values['loss']:.4f}",
                            ex_s=f"{values.get('examples_per_s', 0):.1f}")

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._tb is not None:
      self._tb.close()
    if self._jsonl is not None:
      self._jsonl.close()
