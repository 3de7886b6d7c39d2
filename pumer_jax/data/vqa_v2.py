"""VQA v2 (https://visualqa.org) from the official files in TFDS's manual directory.

One example per question: `question_id`, `image_id`, `image` (the COCO JPEG
bytes as released), `question`, `answers` (the ten human answers, raw; empty
for the test splits). The answer vocabulary and soft scores are computed by
the pipeline (`answers.load_or_build_answer_vocab`), not stored here.

Each COCO image is stored once, in an image table per image set (train2014,
val2014, test2015: test and test-dev share theirs), and joined to its
questions when read (`data/image_table.py`); version 1.0.0 copied the JPEG
into each of its ~5.4 questions.
"""

from __future__ import annotations

import dataclasses

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


class VqaV2(builder.ImageTableBuilder):
  """VQA v2 questions with their ten human answers and COCO images."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "2.0.0": "Each image stored once, in an image table."}
  IMAGE_FIELDS = {"image": "image_id"}
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
            # Stored once per image in the image tables (empty in the record).
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "question": tfds.features.Text(),
            "answers": tfds.features.Sequence(tfds.features.Text()),
        }),
        homepage="https://visualqa.org",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = builder.manual_dir(dl_manager)
    read = dict(dataset="vqa_v2", source=SOURCE)
    splits, tables, generators = {}, {}, {}
    # Read and check every file before writing anything: fail in seconds,
    # not hours.
    for split in self.builder_config.splits:
      questions_name, annotations_name, image_set = _SPLIT_FILES[split]
      questions_file = builder.require_file(root / questions_name, **read)
      questions = _questions(questions_file)
      answers: dict[int, list[str]] | None = None
      if annotations_name is not None:
        annotations_file = builder.require_file(root / annotations_name, **read)
        answers = _answers(annotations_file)
        missing = [q["question_id"] for q in questions
                   if q["question_id"] not in answers]
        if missing:
          raise ValueError(f"{annotations_file} has no annotation for question "
                           f"{missing[0]} of {questions_file} ({len(missing)} "
                           "questions unannotated).")
      files = tables.setdefault(image_set, {})
      for q in questions:
        key = str(q["image_id"])
        if key not in files:
          files[key] = _image_file(root, image_set, q, questions_file)
      splits[split] = image_set
      generators[split] = self._generate_examples(questions, answers)
    self.write_image_tables(tables, splits)
    return generators

  def _generate_examples(self, questions: list[dict],
                         answers: dict[int, list[str]] | None):
    for q in questions:
      question_id = q["question_id"]
      yield question_id, {
          "question_id": question_id,
          "image_id": q["image_id"],
          "image": b"",  # joined from the image table when read
          "question": q["question"],
          "answers": [] if answers is None else answers[question_id],
      }


def _questions(path: epath.Path) -> list[dict]:
  data = builder.read_json(path, dataset="vqa_v2", source=SOURCE)
  if "questions" not in data:
    raise ValueError(f"vqa_v2: {path} has no 'questions' list: is it the "
                     f"official questions file from {SOURCE}?")
  return data["questions"]


def _answers(path: epath.Path) -> dict[int, list[str]]:
  data = builder.read_json(path, dataset="vqa_v2", source=SOURCE)
  if "annotations" not in data:
    raise ValueError(f"vqa_v2: {path} has no 'annotations' list: is it the "
                     f"official annotations file from {SOURCE}?")
  return {a["question_id"]: [h["answer"] for h in a["answers"]]
          for a in data["annotations"]}


def _image_file(root: epath.Path, image_set: str, question: dict,
                questions_file: epath.Path) -> epath.Path:
  path = image_path(root, image_set, question["image_id"])
  if not path.exists():
    raise FileNotFoundError(
        f"vqa_v2: question {question['question_id']} of {questions_file.name} "
        f"is about image {question['image_id']}, whose official file {path} "
        f"does not exist. Place the COCO {image_set} images (from {SOURCE}) "
        "there under their official names.")
  return path
