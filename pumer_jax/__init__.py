"""pumer-jax: token reduction and structured compression for VL models."""

__version__ = "0.1.0"
