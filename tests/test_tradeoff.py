"""Bootstrap intervals and the trade-off plot of evaluate/."""

import numpy as np

from pumer_jax.evaluate import report, tradeoff


def test_bootstrap_interval_properties():
  np.testing.assert_allclose(tradeoff.bootstrap_ci(np.full(50, 0.7)), 0.7)
  coin = np.random.default_rng(0).integers(0, 2, 1000).astype(float)
  lo, hi = tradeoff.bootstrap_ci(coin)
  # The normal approximation: mean +- 1.96 * sqrt(p (1 - p) / n) ~ 3.1 pts.
  assert lo < coin.mean() < hi
  assert abs((hi - lo) / 2 - 1.96 * np.sqrt(0.25 / 1000)) < 0.004
  assert tradeoff.bootstrap_ci(coin) == (lo, hi)  # fixed seed


def test_tradeoff_plot_is_written(tmp_path):
  row = lambda m, s, f, x, t=False: dict(
      method=m, reduce={"method": m}, vqa_score=s, ci95=(s - 0.02, s + 0.02),
      flop_ratio=f, speedup=x, trained=t)
  rows = [row("none", 0.8, 1.0, 1.0), row("pumer", 0.78, 0.8, 1.2),
          row("pumer", 0.7, 0.5, 1.8), row("pumer", 0.75, 0.5, 1.8, True),
          row("tome", 0.72, 0.5, 1.7)]
  path = report.plot_tradeoff(rows, tmp_path / "p.png", "test")
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
