"""EfficientVLM: distill-then-prune model compression (DESIGN 4.5, 4.6)."""
