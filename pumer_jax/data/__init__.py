"""Datasets: TFDS builders written to array_record, the grain pipeline,
tokenizers, VQA answers, and `loaders` (a run config -> its data).

Importing a builder's module registers it with TFDS, so
`tfds.data_source("shapes_vqa", data_dir=...)` finds it; this package's
`__init__` imports nothing, so light modules (`shapes_vocab`) stay light.
"""
