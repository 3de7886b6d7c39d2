"""The shared config bases: every key with its default (`base.py`), and the
ViLT and METER task templates the files in the top-level configs/ call.

Config files import only these and `ml_collections`: parsing a config never
imports TFDS, transformers, torch or grain.
"""
