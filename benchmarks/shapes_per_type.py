r"""Per-question-type VQA score of a shapes_vqa model, beside the text-only
reference, with 95% intervals.

  python benchmarks/shapes_per_type.py --config configs/vilt_shapes.py:pretrain \
      --model_dir checkpoints/vilt_shapes [--split test] [--reduce pumer] \
      [--set data.builder_config.patch_aligned=0] [--out runs/per_type.json]

Scores the model (unreduced, or under the config's `reducers[--reduce]`) on
the split with `pumer_jax.evaluate.score`; the text-only reference is the
best answer per exact question text on the train split. `--set` changes the
data (objects off the patch grid, another seed: `data.builder_config.seed`).
Prints a markdown table; `--out` also writes it as JSON.
"""

from __future__ import annotations

import json
import pathlib

from pumer_jax import entry
from pumer_jax.data import loaders
from pumer_jax.evaluate import per_type, score
from pumer_jax.evaluate.runner import reducer_for
from pumer_jax.evaluate.target_recall import split_records
from pumer_jax.models import saved


def main(argv=None) -> dict:
  parser = entry.script_parser(__doc__.split("\n\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--split", default="test")
  parser.add_argument("--reduce", default="",
                      help="a config.reducers entry (default: unreduced)")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  entry.script_setup()
  config = entry.script_config(args)
  reduce = None
  if args.reduce:
    trained = saved.load_model(args.model_dir)[0].config.reduce
    reduce = reducer_for(args.reduce, config, trained)
  scored = score.score(args.model_dir,
                       loaders.eval_batches(config, args.split),
                       reduce=reduce)
  table = per_type.per_type(scored, split_records(config, args.split),
                            split_records(config, "train"))
  print(per_type.format_per_type(table))
  if args.out:
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(
        model_dir=args.model_dir, config=args.config, overrides=args.set,
        split=args.split, reduce=args.reduce or "none", per_type=table),
        indent=2) + "\n")
    print(f"wrote {out}")
  return table


if __name__ == "__main__":
  main()
