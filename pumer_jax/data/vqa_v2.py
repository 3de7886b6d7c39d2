"""VQA v2 (https://visualqa.org) from the official files in TFDS's manual directory.

One example per question: `question_id`, `image_id`, `image` (the COCO JPEG
bytes as released), `question`, `answers` (the ten human answers, raw; empty
for the test splits). The answer vocabulary and soft scores are computed by
the pipeline (`answers.load_or_build_answer_vocab`), not stored here.

Each example carries its own copy of the image bytes, so the prepared train
split is about as large as the COCO images times the ~5 questions per image.
"""

from __future__ import annotations

import dataclasses
import json

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from pumer_jax.data import builder

SOURCE = "https://visualqa.org/download.html"

# split -> (questions file, annotations file or None, COCO image set)
_SPLIT_FILES = {
    "train": ("v2_OpenEnded_mscoco_train2014_questions.json",
              "v2_mscoco_train2014_annotations.json", "train2014"),
    "validation": ("v2_OpenEnded_mscoco_val2014_questions.json",
                   "v2_mscoco_val2014_annotations.json", "val2014"),
    "test": ("v2_OpenEnded_mscoco_test2015_questions.json", None, "test2015"),
    # test-dev is a subset of test2015: its images live in test2015/.
    "test_dev": ("v2_OpenEnded_mscoco_test-dev2015_questions.json", None, "test2015"),
}


def image_path(manual_dir: epath.Path, image_set: str, image_id: int) -> epath.Path:
  """The official location of a COCO image, e.g. train2014/COCO_train2014_000000000009.jpg."""
  return manual_dir / image_set / f"COCO_{image_set}_{image_id:012d}.jpg"


def _instructions() -> str:
  lines = []
  for split, (questions, answers_file, image_set) in _SPLIT_FILES.items():
    test = split.startswith("test")
    lines += [questions + (" (config with_test only)" if test else "")]
    lines += [answers_file] if answers_file else []
    lines.append(f"{image_set}/COCO_{image_set}_<image_id:012d>.jpg"
                 + (" (config with_test only)" if test else ""))
  listing = "\n".join(f"  {f}" for f in dict.fromkeys(lines))
  return (f"Place these official VQA v2 files (from {SOURCE}; the images are "
          f"COCO's) in the manual directory, unzipped:\n{listing}")


@dataclasses.dataclass(eq=False)
class VqaV2Config(tfds.core.BuilderConfig):
  """Which splits to prepare: the test questions are a separate download."""

  splits: tuple[str, ...] = ("train", "validation")


class VqaV2(builder.ArrayRecordBuilder):
  """VQA v2 questions with their ten human answers and COCO images."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      VqaV2Config(name="default", description="train and validation."),
      VqaV2Config(name="with_test", description="train, validation, test and test_dev.",
                  splits=("train", "validation", "test", "test_dev")),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions()

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n\n")[1],
        features=tfds.features.FeaturesDict({
            "question_id": np.int64,
            "image_id": np.int64,
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "question": tfds.features.Text(),
            "answers": tfds.features.Sequence(tfds.features.Text()),
        }),
        homepage="https://visualqa.org",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    splits = self.builder_config.splits
    root = builder.manual_dir(dl_manager)
    generators = {}
    for split in splits:
      questions_name, annotations_name, image_set = _SPLIT_FILES[split]
      # Check the json files before generating anything: fail in seconds, not hours.
      questions = builder.require_file(root / questions_name, dataset="vqa_v2", source=SOURCE)
      annotations = None
      if annotations_name is not None:
        annotations = builder.require_file(root / annotations_name, dataset="vqa_v2",
                                           source=SOURCE)
      generators[split] = self._generate_examples(root, questions, annotations, image_set)
    return generators

  def _generate_examples(self, root: epath.Path, questions_file: epath.Path,
                         annotations_file: epath.Path | None, image_set: str):
    questions = json.loads(questions_file.read_text())["questions"]
    answers: dict[int, list[str]] = {}
    if annotations_file is not None:
      for a in json.loads(annotations_file.read_text())["annotations"]:
        answers[a["question_id"]] = [h["answer"] for h in a["answers"]]
    for q in questions:
      question_id, image_id = q["question_id"], q["image_id"]
      if annotations_file is not None and question_id not in answers:
        raise ValueError(f"{annotations_file} has no annotation for question {question_id} "
                         f"of {questions_file}.")
      path = builder.require_file(image_path(root, image_set, image_id), dataset="vqa_v2",
                                  source=SOURCE)
      yield question_id, {
          "question_id": question_id,
          "image_id": image_id,
          "image": path.read_bytes(),
          "question": q["question"],
          "answers": answers.get(question_id, []),
      }
