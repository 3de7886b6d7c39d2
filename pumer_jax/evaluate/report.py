"""The evaluation report: a printed table and the JSON beside it."""

from __future__ import annotations

import json
import pathlib
from typing import Any


def format_table(report: dict[str, Any]) -> str:
  rows = [f"{'method':<12}{report['results'][0]['metric']:>12}{'examples':>10}"
          f"{'flop ratio':>12}{'speedup':>10}  tokens per layer"]
  for r in report["results"]:
    rows.append(
        f"{r['method']:<12}{100 * r['value']:>11.2f}%{r['examples']:>10}"
        f"{r['flop_ratio']:>12.3f}{r['speedup']:>9.2f}x  "
        f"{r['tokens_per_layer']}")
  return "\n".join(rows)


def write_report(report: dict[str, Any], path: pathlib.Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report, indent=2) + "\n")
