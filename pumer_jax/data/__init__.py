"""Datasets (TFDS builders written to array_record), grain loaders, tokenizers.

Importing this package registers the builders with TFDS, so
`tfds.data_source("shapes_vqa", data_dir=...)` finds them.
"""

from pumer_jax.data import answers
from pumer_jax.data import shapes_vqa
from pumer_jax.data.flickr30k import CAPTIONS_PER_IMAGE, Flickr30k
from pumer_jax.data.nlvr2 import Nlvr2
from pumer_jax.data.pipeline import data_source, make_loader
from pumer_jax.data.shapes_vqa import ShapesVqa, ShapesVqaConfig
from pumer_jax.data.snli_ve import SnliVe
from pumer_jax.data.tokenizers import bert_tokenizer, roberta_tokenizer, word_level_tokenizer
from pumer_jax.data.vqa_v2 import VqaV2, VqaV2Config

__all__ = [
    "CAPTIONS_PER_IMAGE", "Flickr30k", "Nlvr2", "ShapesVqa", "ShapesVqaConfig", "SnliVe",
    "VqaV2", "VqaV2Config", "answers", "bert_tokenizer", "data_source", "make_loader",
    "roberta_tokenizer", "shapes_vqa", "word_level_tokenizer",
]
