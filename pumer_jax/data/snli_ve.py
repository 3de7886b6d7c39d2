"""SNLI-VE (https://github.com/necla-ml/SNLI-VE): visual entailment on Flickr30k images.

One example per (image, hypothesis) pair: `pair_id`, `image_id` (the
Flickr30K_ID), `image` (JPEG bytes), `premise` (the SNLI caption,
sentence1), `hypothesis` (sentence2), and `label` in
entailment/neutral/contradiction. Lines without a gold label ("-", no
annotator consensus) are skipped, as in the official release's statistics.

Each Flickr30k image is stored once, in one image table for all splits, and
joined to its hypotheses when read (`data/image_table.py`); version 1.0.0
copied the JPEG into each of its ~17 hypotheses.
"""

from __future__ import annotations

from etils import epath
import tensorflow_datasets as tfds

from pumer_jax.data import builder

SOURCE = "https://github.com/necla-ml/SNLI-VE"
IMAGES_SOURCE = "https://shannon.cs.illinois.edu/DenotationGraph/"
LABELS = ("entailment", "neutral", "contradiction")
_SPLIT_FILES = {"train": "snli_ve_train.jsonl", "validation": "snli_ve_dev.jsonl",
                "test": "snli_ve_test.jsonl"}
# Where the Flickr30k images may be: the SNLI-VE repository's layout first,
# then the Flickr30k tarball's own folder names.
IMAGE_DIRS = ("Flickr30K/flickr30k_images", "flickr30k_images", "flickr30k-images")

MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Place the official SNLI-VE files (from {SOURCE}) in the manual directory:\n"
    + "".join(f"  {f}\n" for f in _SPLIT_FILES.values())
    + f"and the Flickr30k images (from {IMAGES_SOURCE}) as "
    + " or ".join(f"{d}/<Flickr30K_ID>.jpg" for d in IMAGE_DIRS) + ".")


class SnliVe(builder.ImageTableBuilder):
  """SNLI-VE hypotheses about Flickr30k images, with 3-way entailment labels."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "2.0.0": "Each image stored once, in an image table."}
  IMAGE_FIELDS = {"image": "image_id"}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n\n")[1],
        features=tfds.features.FeaturesDict({
            "pair_id": tfds.features.Text(),
            "image_id": tfds.features.Text(),
            # Stored once per image in the image table (empty in the record).
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "premise": tfds.features.Text(),
            "hypothesis": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=LABELS),
        }),
        homepage=SOURCE,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = builder.manual_dir(dl_manager)
    files = {split: builder.require_file(root / name, dataset="snli_ve", source=SOURCE)
             for split, name in _SPLIT_FILES.items()}
    # Read and check every line and image before writing anything.
    rows = {split: list(_rows(path)) for split, path in files.items()}
    images: dict[str, epath.Path] = {}
    for split_rows in rows.values():
      for row in split_rows:
        image_id = str(row["Flickr30K_ID"])
        if image_id not in images:
          images[image_id] = builder.find_file(
              root, [f"{d}/{image_id}.jpg" for d in IMAGE_DIRS],
              dataset="snli_ve", source=IMAGES_SOURCE)
    self.write_image_tables({"flickr30k": images},
                            {split: "flickr30k" for split in files})
    return {split: self._generate_examples(split_rows)
            for split, split_rows in rows.items()}

  def _generate_examples(self, rows: list[dict]):
    for row in rows:
      yield row["pairID"], {
          "pair_id": row["pairID"],
          "image_id": str(row["Flickr30K_ID"]),
          "image": b"",  # joined from the image table when read
          "premise": row["sentence1"],
          "hypothesis": row["sentence2"],
          "label": row["gold_label"],
      }


def _rows(path: epath.Path):
  """Each labelled line's row; "-" (no annotator consensus) is skipped."""
  for line_number, row in builder.read_json_lines(path, dataset="snli_ve",
                                                  source=SOURCE):
    label = row["gold_label"]
    if label == "-":
      continue
    if label not in LABELS:
      raise ValueError(f"{path}:{line_number}: gold_label {label!r} is not one of {LABELS}.")
    yield row
