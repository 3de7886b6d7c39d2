r"""`python -m pumer_jax.visualize`: what each reducer keeps, drawn.

  python -m pumer_jax.visualize --model_dir checkpoints/vilt_shapes \
      --methods pumer,tome --examples 6 --out runs/demo/reductions.png \
      [--config configs/vilt_shapes.py:pretrain] [--split test]

One row per test example: the image with its question, the true answer
and the unreduced model's; then, for each method and each of its reduction
layers, the image with every surviving token's source patches in one
colour (ToMe's source picture) and the pruned patches greyed out, titled
with the method's answer. The objects the question names are outlined.
Reducers come from the config's `reducers` block, as eval.py's.
"""

from __future__ import annotations

import argparse
import pathlib
import textwrap

import matplotlib.colors
import matplotlib.patches as mpatches
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pumer_jax.configs.base import load_config
from pumer_jax.data import loaders, shapes_vqa
from pumer_jax.evaluate import score as scoring
from pumer_jax.evaluate.runner import check_reducer_params, reducer_for
from pumer_jax.evaluate.target_recall import model_layers, objects_from_record
from pumer_jax.models import ViltConfig, saved
from pumer_jax.reduce import ReduceConfig

PRUNED_GREY = np.array([0.55, 0.55, 0.55])


def token_colours(num_tokens: int, seed: int = 0) -> np.ndarray:
  """[num_tokens, 3] distinct-ish colours, shuffled so neighbours differ."""
  hues = np.random.default_rng(seed).permutation(num_tokens) / max(num_tokens, 1)
  hsv = np.stack([hues, np.full(num_tokens, 0.65), np.full(num_tokens, 0.95)], -1)
  return matplotlib.colors.hsv_to_rgb(hsv)


def source_picture(image: np.ndarray, patch_sources: np.ndarray,
                   patch_size: int) -> np.ndarray:
  """The image tinted by which surviving token holds each patch.

  Args:
    image: [S, S, 3] uint8.
    patch_sources: [N_out, P] the share of each patch each token holds.

  Returns:
    [S, S, 3] float in [0, 1]: kept patches blended with their token's
    colour, pruned patches grey.
  """
  grid = image.shape[0] // patch_size
  owner = patch_sources.argmax(axis=0)  # [P]
  kept = patch_sources.max(axis=0) > 0
  colours = token_colours(patch_sources.shape[0])[owner]  # [P, 3]
  colours[~kept] = PRUNED_GREY
  tint = colours.reshape(grid, grid, 3).repeat(patch_size, 0).repeat(
      patch_size, 1)
  alpha = np.where(kept.reshape(grid, grid), 0.55, 0.85).repeat(
      patch_size, 0).repeat(patch_size, 1)[..., None]
  return (1 - alpha) * image / 255.0 + alpha * tint


def outline(ax, obj) -> None:
  """Draws a shapes_vqa object's contour (its `object_mask` geometry)."""
  style = dict(fill=False, edgecolor="black", linewidth=1.6)
  x, y, r = obj.x - 0.5, obj.y - 0.5, obj.radius
  if obj.shape == "circle":
    ax.add_patch(mpatches.Circle((x, y), r, **style))
  elif obj.shape == "square":
    ax.add_patch(mpatches.Rectangle((x - 0.85 * r, y - 0.85 * r), 1.7 * r,
                                    1.7 * r, **style))
  else:
    ax.add_patch(mpatches.Polygon([(x, y - r), (x - r, y + r), (x + r, y + r)],
                                  closed=True, **style))


def _outputs(model_dir, reduce: ReduceConfig, batch: dict) -> dict:
  """The model's outputs on `batch` under `reduce`, with `sources`, one
  source map per reduction layer (`evaluate.score`'s first batch)."""
  return scoring.score(model_dir, lambda: [batch], reduce=reduce,
                       track_source=True).first_batch


def draw(model_dir, config, methods: list[str], examples: int, out,
         split: str = "test") -> pathlib.Path:
  """Writes the picture to `out` and returns its path."""
  base, base_variables = saved.load_model(model_dir)
  base_params = base_variables["params"]
  c = base.config
  if not isinstance(c, ViltConfig):
    raise ValueError("visualize draws ViLT's [text; image] source maps; "
                     f"{model_dir} is a {type(c).__name__}.")
  records = loaders.prepared_builder(config).as_data_source(split=split)
  batch = next(iter(loaders.eval_batches(config, split)()))
  rows = np.flatnonzero(batch["valid"])[:examples]
  text_len = batch["input_ids"].shape[1]
  answers = lambda out: [shapes_vqa.ANSWERS[i] for i in
                         np.asarray(out["logits"]).argmax(-1)]
  plain = answers(_outputs(model_dir, ReduceConfig(), batch))
  panels = []  # per method and layer: (title, source [B, N, N0], answers)
  for name in methods:
    reduce = reducer_for(name, config, c.reduce)
    layers = model_layers(c.replace(reduce=reduce), text_len)
    if not layers:
      raise ValueError(f"method {name!r} ({reduce.method}) reduces no "
                       "tokens inside the model: there is no source map to "
                       "draw.")
    check_reducer_params(name, reduce, base_params, model_dir)
    result = _outputs(model_dir, reduce, batch)  # every layer's source map
    final = answers(result)
    for layer, source in zip(layers, result["sources"]):
      panels.append((f"{name} after layer {layer}", np.asarray(source),
                     final))
  fig = Figure(figsize=(1.9 * (1 + len(panels)), 2.1 * len(rows)))
  FigureCanvasAgg(fig)
  axes = fig.subplots(len(rows), 1 + len(panels), squeeze=False)
  for i, row in enumerate(rows):
    record = records[int(batch["example_id"][row])]
    image = np.asarray(record["image"])
    objects = objects_from_record(record)
    named = [objects[j] for j in np.asarray(record["referents"])]
    truth = record["answers"][0]
    truth = truth.decode() if isinstance(truth, bytes) else truth
    question = record["question"]
    question = question.decode() if isinstance(question, bytes) else question
    axes[i, 0].imshow(image)
    axes[i, 0].set_title(
        "\n".join(textwrap.wrap(question, 30))
        + f"\ntrue: {truth} | none: {plain[row]}", fontsize=6.5)
    for j, (title, source, final) in enumerate(panels, start=1):
      picture = source_picture(image, source[row][:, text_len + 1:],
                               c.patch_size)
      axes[i, j].imshow(picture)
      if j == len(panels) or panels[j][0].split()[0] != title.split()[0]:
        title = f"{title}\nanswer: {final[row]}"
      axes[i, j].set_title(title, fontsize=6.5)
    for ax in axes[i]:
      for obj in named:
        outline(ax, obj)
      ax.set_xticks([])
      ax.set_yticks([])
  fig.tight_layout()
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=110)
  return out


def main(argv=None) -> pathlib.Path:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--methods", default="pumer,tome")
  parser.add_argument("--examples", type=int, default=6)
  parser.add_argument("--out", required=True)
  parser.add_argument("--config", default="configs/vilt_shapes.py:pretrain")
  parser.add_argument("--split", default="test")
  args = parser.parse_args(argv)
  methods = [m.strip() for m in args.methods.split(",") if m.strip()]
  path = draw(args.model_dir, load_config(args.config), methods,
              args.examples, args.out, args.split)
  print(f"wrote {path}")
  return path


if __name__ == "__main__":
  main()
