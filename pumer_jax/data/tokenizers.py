"""Tokenizers from local files: BERT WordPiece (ViLT), RoBERTa BPE (METER), word-level.

Everything is built from files on disk, never downloaded. transformers 5
silently ignores `vocab_file=` in the fast tokenizers' constructors (the
result has a 5-token vocabulary and maps every word to the unknown token),
so we pass the files as `vocab=`/`merges=` and check the loaded vocabulary
size against the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import tokenizers as hf_tokenizers
import transformers

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def bert_tokenizer(path: str | os.PathLike, *, lowercase: bool = True
                   ) -> transformers.PreTrainedTokenizerFast:
  """A BERT WordPiece tokenizer (ViLT uses bert-base-uncased's).

  Args:
    path: a Hugging Face tokenizer directory (with `tokenizer.json` or
      `vocab.txt`), or a `vocab.txt` file, one WordPiece token per line.
    lowercase: lowercase and strip accents (uncased vocabularies). Only used
      with a vocab file; a directory carries its own setting.

  Raises:
    FileNotFoundError: `path` or the vocabulary inside it does not exist.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    if not any(os.path.exists(os.path.join(path, f)) for f in ("tokenizer.json", "vocab.txt")):
      raise FileNotFoundError(
          f"{path}: a BERT tokenizer directory needs tokenizer.json or vocab.txt "
          "(e.g. bert-base-uncased from https://huggingface.co/google-bert/bert-base-uncased).")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(path)
    vocab_file = os.path.join(path, "vocab.txt")
  elif os.path.isfile(path):
    tokenizer = transformers.BertTokenizerFast(vocab=path, do_lower_case=lowercase)
    vocab_file = path
  else:
    raise FileNotFoundError(
        f"{path}: expected a BERT vocab.txt file or a tokenizer directory "
        "(e.g. bert-base-uncased from https://huggingface.co/google-bert/bert-base-uncased).")
  if os.path.isfile(vocab_file):
    with open(vocab_file, encoding="utf-8") as f:
      expected = sum(1 for line in f if line.rstrip("\n"))
    _check_vocab_size(tokenizer, expected, vocab_file)
  return tokenizer


def roberta_tokenizer(path: str | os.PathLike) -> transformers.PreTrainedTokenizerFast:
  """A RoBERTa byte-level BPE tokenizer (METER's text encoder).

  Args:
    path: a directory with `vocab.json` and `merges.txt` (as in roberta-base),
      or with a `tokenizer.json` only.

  Raises:
    FileNotFoundError: the directory or its vocabulary files do not exist.
  """
  path = os.fspath(path)
  vocab_file = os.path.join(path, "vocab.json")
  merges_file = os.path.join(path, "merges.txt")
  if os.path.isfile(vocab_file) and os.path.isfile(merges_file):
    tokenizer = transformers.RobertaTokenizerFast(vocab=vocab_file, merges=merges_file)
    with open(vocab_file, encoding="utf-8") as f:
      _check_vocab_size(tokenizer, len(json.load(f)), vocab_file)
    return tokenizer
  if os.path.isfile(os.path.join(path, "tokenizer.json")):
    return transformers.RobertaTokenizerFast.from_pretrained(path)
  raise FileNotFoundError(
      f"{path}: expected vocab.json and merges.txt (or tokenizer.json) of a RoBERTa "
      "tokenizer, e.g. from https://huggingface.co/FacebookAI/roberta-base.")


def word_level_tokenizer(words: Sequence[str]) -> transformers.PreTrainedTokenizerFast:
  """A lowercasing word-level tokenizer with BERT's special tokens and layout.

  Text is split on whitespace and punctuation (as BERT pre-tokenises), each
  piece looked up whole; the output is `[CLS] words [SEP]`, like
  `bert_tokenizer`, so the pipeline treats both the same way.

  Args:
    words: the vocabulary, without special tokens; ids follow the five
      special tokens in `BERT_SPECIAL_TOKENS` order.
  """
  vocab = {token: i for i, token in enumerate(BERT_SPECIAL_TOKENS)}
  for word in words:
    if word in vocab:
      raise ValueError(f"duplicate word {word!r} in a word-level vocabulary.")
    vocab[word] = len(vocab)
  backend = hf_tokenizers.Tokenizer(hf_tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
  backend.normalizer = hf_tokenizers.normalizers.BertNormalizer(lowercase=True)
  backend.pre_tokenizer = hf_tokenizers.pre_tokenizers.BertPreTokenizer()
  backend.post_processor = hf_tokenizers.processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
      special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
      cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def _check_vocab_size(tokenizer: transformers.PreTrainedTokenizerBase, expected: int,
                      source: str) -> None:
  """Guards against a constructor that silently ignored its vocabulary file."""
  if tokenizer.vocab_size != expected:
    raise ValueError(
        f"tokenizer built from {source} has {tokenizer.vocab_size} tokens; the file has "
        f"{expected}. The file was not used (transformers ignores `vocab_file=`).")
