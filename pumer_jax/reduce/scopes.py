"""Named scopes for the three kinds of work a reducer does.

`score` (what each token is worth: text->image attention, a keep
predictor), `match` (which tokens go where: top-k, ToMe's similarities and
argsort, Gumbel decisions) and `apply` (gathers and scatters that carry an
assignment out). The shared building blocks wear them, so every method that
uses them is broken down the same way in compiled programs' metadata
(`benchmarks/time_breakdown.py` reads them back from a profiler trace).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import jax

SCORE, MATCH, APPLY = "score", "match", "apply"
PARTS = (SCORE, MATCH, APPLY)

F = TypeVar("F", bound=Callable)


def scoped(part: str) -> Callable[[F], F]:
  """Runs the decorated function under `jax.named_scope(part)`."""
  if part not in PARTS:
    raise ValueError(f"part={part!r} must be one of {PARTS}.")

  def decorate(fn: F) -> F:
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
      with jax.named_scope(part):
        return fn(*args, **kwargs)
    return wrapped  # type: ignore[return-value]

  return decorate
