"""`make demo`: the project's main job on the embedded dataset.

Trains ViLT on `shapes_vqa` unreduced, then with PuMer distilled from it,
and evaluates none / pumer / tome. Until train.py and eval.py exist it says
so instead of pretending.
"""

import sys


def main() -> int:
  print(
      "make demo: the train + eval demo needs train.py/eval.py, which are "
      "not built yet (issue: 'train.py and eval.py'). What works now: the "
      "token reducers (pumer_jax.reduce), ViLT with every reducer "
      "(pumer_jax.models), Hugging Face import (python -m pumer_jax.convert) "
      "and `make test`.",
      file=sys.stderr,
  )
  return 2


if __name__ == "__main__":
  sys.exit(main())
