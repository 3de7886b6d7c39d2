"""Task heads on pooled features (names follow Hugging Face ViLT)."""

from __future__ import annotations

import flax.linen as nn
import jax

from pumer_jax.models.layers import ACTIVATIONS, Dtype, dense, layer_norm

TASK_HEADS = ("vqa", "ve", "nlvr2", "retrieval", "none")


class ClassifierHead(nn.Module):
  """Linear(F, 2F or F) -> LayerNorm -> GELU -> Linear(num_labels).

  VQA (3129 soft labels) and SNLI-VE (3 classes) widen to 2F as
  `ViltForQuestionAnswering`; NLVR2 keeps F = 2D, the two images' pooled
  features concatenated, as `ViltForImagesAndTextClassification`.
  """

  hidden: int
  num_labels: int
  dtype: Dtype = jax.numpy.float32

  @nn.compact
  def __call__(self, pooled: jax.Array) -> jax.Array:
    h = dense(self.hidden, ("embed", "mlp"), "dense", dtype=self.dtype)(pooled)
    # PyTorch's nn.LayerNorm default eps, as the Hugging Face heads use.
    h = layer_norm(1e-5, "norm", self.dtype)(h)
    h = ACTIVATIONS["gelu"](h)
    return dense(self.num_labels, ("mlp", None), "out", dtype=self.dtype)(h)


class RankHead(nn.Module):
  """Image-text matching score for retrieval: Linear(D, 1)."""

  dtype: Dtype = jax.numpy.float32

  @nn.compact
  def __call__(self, pooled: jax.Array) -> jax.Array:
    return dense(1, ("embed", None), "rank_output", dtype=self.dtype)(pooled)
