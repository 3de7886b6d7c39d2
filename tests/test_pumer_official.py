"""PuMer's official semantics against an independent PyTorch reference.

The reference below is written from the behaviour PuMer's code exhibits
(issue 16's list: its masked softmax with fractional masks and the
self-weight of every query, prune scores over every text row divided by
the text mask's sum, top-k keep with the image CLS token unprotected,
ToMe matching with plain-mean merges and mean masks, no reduction where
the prune count rounds to 0), on top of `transformers`' ViLT layers with
random weights. It is not the official repository's code.
"""

import numpy as np
import pytest
import torch

from pumer_jax.convert import vilt_from_hf
from pumer_jax.models import ReduceConfig
from pumer_jax.reduce import Geometry
from tests.test_vilt_parity import inputs, save_random_hf_model, to_nhwc

EPS = 1e-6


def masked_softmax(logits, mask):
  """exp(l - max) * (m + (1 - m) * eye), then (w + eps/N) / (sum + eps)."""
  nq, nk = logits.shape[-2:]
  weight = mask[:, None, None, :] + (1 - mask[:, None, None, :]) * torch.eye(
      nq, nk)[None, None]
  w = torch.exp(logits - logits.max(-1, keepdim=True).values) * weight
  return (w + EPS / nk) / (w.sum(-1, keepdim=True) + EPS)


def tome_mean_merge(x, metric, r):
  """ToMe's matching (slot 0 kept), groups averaged with unit weights."""
  n = x.shape[1]
  r = min(r, (n - 1) // 2)
  if r <= 0:
    return x
  metric = metric / metric.norm(dim=-1, keepdim=True)
  scores = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)
  scores[:, 0, :] = -float("inf")
  best, partner = scores.max(-1)
  out = []
  for b in range(x.shape[0]):
    order = torch.argsort(-best[b], stable=True)
    merged, kept = order[:r], torch.sort(order[r:]).values
    a, dst = x[b, ::2], x[b, 1::2].clone()
    count = torch.ones(dst.shape[0])
    for i in merged.tolist():
      j = int(partner[b, i])
      dst[j] = dst[j] + a[i]
      count[j] += 1
    out.append(torch.cat([a[kept], dst / count[:, None]], 0))
  return torch.stack(out)


def reference_forward(model, ids, mask, pixels, layers, p, m, t, heads):
  """ViLT + PuMer as the paper's code runs it; returns (logits, tokens)."""
  vilt = model.vilt
  with torch.no_grad():
    x, co_mask = vilt.embeddings(
        torch.tensor(ids), torch.tensor(mask), torch.zeros_like(
            torch.tensor(ids)), torch.tensor(pixels),
        torch.ones(pixels.shape[:1] + pixels.shape[-2:], dtype=torch.long),
        None, None, image_token_type_idx=1)
    co_mask = co_mask.float()
    text_len = ids.shape[1]
    tokens = []
    for i, layer in enumerate(vilt.encoder.layer):
      tokens.append(x.shape[1])
      attention = layer.attention.attention
      h = layer.layernorm_before(x)
      b, n, d = h.shape
      heads_n = attention.num_attention_heads
      split = lambda z: z.view(b, n, heads_n, d // heads_n).transpose(1, 2)
      q, k, v = (split(f(h)) for f in (attention.query, attention.key,
                                       attention.value))
      probs = masked_softmax(q @ k.transpose(-1, -2) / (d // heads_n) ** 0.5,
                             co_mask)
      context = (probs @ v).transpose(1, 2).reshape(b, n, d)
      x = x + layer.attention.output.dense(context)
      keys = k.mean(1)  # [B, N, Dh]
      image_len = n - text_len
      prune = round(p * image_len) if i in layers else 0
      if prune > 0:
        text_mask = co_mask[:, :text_len]
        cross = probs[:, :, :text_len, text_len:]
        per_row = cross.mean(1) if heads == "mean" else cross[:, 0]
        scores = per_row.sum(1) / text_mask.sum(1, keepdim=True)
        keep = max(image_len - prune, 1)
        idx = torch.topk(scores, keep, dim=-1).indices  # descending
        pick = lambda z: torch.gather(
            z, 1, idx[..., None].expand(-1, -1, z.shape[-1]))
        image = pick(x[:, text_len:])
        image = tome_mean_merge(image, pick(keys[:, text_len:]),
                                round(m * image_len))
        text_r = round(t * text_len)
        text = tome_mean_merge(x[:, :text_len], keys[:, :text_len], text_r)
        text_mask = tome_mean_merge(text_mask[..., None], keys[:, :text_len],
                                    text_r)[..., 0]
        text_len = text.shape[1]
        x = torch.cat([text, image], 1)
        co_mask = torch.cat([text_mask, torch.ones(image.shape[:2])], 1)
      x = layer.output(layer.intermediate(layer.layernorm_after(x)), x)
    tokens.append(x.shape[1])
    pooled = vilt.pooler(vilt.layernorm(x))
    return model.classifier(pooled).numpy(), tokens


CASES = {
    # (layers, p, m, t, heads)
    "mean_heads": ((0, 1, 2), 0.3, 0.2, 0.3, "mean"),  # a 3-layer cascade
    "first_head": ((0, 1), 0.3, 0.2, 0.2, "first"),
    # 17 image tokens: round(0.02 * 17) = 0 at layer 0, so nothing there.
    "zero_prune_layer": ((0, 2), 0.02, 0.3, 0.3, "mean"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_official_pumer_equals_pytorch_reference(tmp_path, case):
  layers, p, m, t, heads = CASES[case]
  hf_model = save_random_hf_model("vqa", tmp_path)
  ids, mask, pixels = inputs("vqa", 64, 64)  # padded rows of 6 and 3 tokens
  want, want_tokens = reference_forward(hf_model, ids, mask, pixels, layers,
                                        p, m, t, heads)
  reduce = ReduceConfig(method="pumer", layers=layers, prune_ratio=p,
                        image_merge_ratio=m, text_merge_ratio=t,
                        score_heads=heads)
  assert reduce.semantics == "official"  # the default
  model, variables = vilt_from_hf(tmp_path, reduce=reduce)
  out = model.apply(variables, input_ids=ids, attention_mask=mask,
                    pixel_values=to_nhwc(pixels))
  assert out["tokens"].tolist() == want_tokens
  np.testing.assert_allclose(out["logits"], want, atol=1e-4, rtol=0)


def test_official_edge_rules_in_the_schedule():
  build = lambda arch="vilt", **kw: ReduceConfig(
      method="pumer", semantics="official", **kw).schedule(
          Geometry(arch, 4, 17, 10))
  # A prune count that rounds to 0 reduces nothing, merges included.
  assert build(layers=(0,), prune_ratio=0.02, image_merge_ratio=0.3,
               text_merge_ratio=0.3).steps == ()
  # The keep count is floored at 1 (the CLS token is prunable) and merges
  # are clamped where the sized semantics would raise.
  step = build(layers=(0,), prune_ratio=0.99, image_merge_ratio=0.5).steps[0]
  assert (step.keep, step.merge_image, step.image_out) == (1, 0, 1)
  step = build(layers=(0,), prune_ratio=0.1, image_merge_ratio=0.9,
               text_merge_ratio=0.9).steps[0]
  assert (step.keep, step.merge_image, step.merge_text) == (15, 7, 4)
  # METER's reference keeps the unpruned image when it merges none of it.
  meter = build(arch="meter", layers=(0,), prune_ratio=0.2,
                image_merge_ratio=0.0)
  assert (meter.steps[0].keep, meter.steps[0].image_out) == (17, 17)
  with pytest.raises(ValueError, match="semantics"):
    ReduceConfig(method="pumer", semantics="exact")
  with pytest.raises(ValueError, match="score_heads"):
    ReduceConfig(method="pumer", score_heads="last")


# ---------------------------------------------------------------------------
# METER: PuMer's fusion order (the image side reads the text side's output)
# ---------------------------------------------------------------------------


def meter_reference_fusion(sd, text, image, mask, layers, p, m, t, order):
  """The co-attention blocks and VQA head in PyTorch, from the official
  state dict `sd`, on the fusion inputs `text` [B, Lt, D] / `image`."""
  w = lambda k: torch.from_numpy(np.asarray(sd[k]))
  lin = lambda k, z: z @ w(k + ".weight").T + w(k + ".bias")
  norm = lambda k, z: torch.nn.functional.layer_norm(
      z, z.shape[-1:], w(k + ".weight"), w(k + ".bias"), 1e-12)
  heads = 4

  def attention(pre, queries, context, key_mask):
    b, nq, d = queries.shape
    split = lambda z: z.view(b, z.shape[1], heads, d // heads).transpose(1, 2)
    q = split(lin(pre + ".self.query", queries))
    k = split(lin(pre + ".self.key", context))
    v = split(lin(pre + ".self.value", context))
    probs = masked_softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5,
                           key_mask)
    out = (probs @ v).transpose(1, 2).reshape(b, nq, d)
    return norm(pre + ".output.LayerNorm",
                lin(pre + ".output.dense", out) + queries), probs, k.mean(1)

  def ffn(pre, z):
    h = torch.nn.functional.gelu(lin(pre + ".intermediate.dense", z))
    return norm(pre + ".output.LayerNorm", lin(pre + ".output.dense", h) + z)

  x, y = text, image
  t_mask, i_mask = mask.float(), torch.ones(image.shape[:2])
  tokens = []
  for i in range(2):
    tokens.append((y.shape[1], x.shape[1]))
    pre_t, pre_i = f"cross_modal_text_layers.{i}", f"cross_modal_image_layers.{i}"
    block_x, block_mask = x, t_mask
    xa, _, text_keys = attention(pre_t + ".attention", x, x, t_mask)
    xa, cross, image_keys = attention(pre_t + ".crossattention", xa, y, i_mask)
    if i in layers and p > 0:
      li, lt = y.shape[1], xa.shape[1]
      scores = cross.mean(1).sum(1) / t_mask.sum(1, keepdim=True)
      keep = max(li - round(p * li), 1)
      idx = torch.topk(scores, keep, dim=-1).indices
      pick = lambda z: torch.gather(
          z, 1, idx[..., None].expand(-1, -1, z.shape[-1]))
      if round(m * li) > 0:  # else the reference keeps y as it was
        y = tome_mean_merge(pick(y), pick(image_keys), round(m * li))
      i_mask = torch.ones(y.shape[:2])
      text_r = round(t * lt)
      t_mask = tome_mean_merge(t_mask[..., None], text_keys, text_r)[..., 0]
      xa = tome_mean_merge(xa, text_keys, text_r)
    x = ffn(pre_t, xa)
    context, context_mask = (x, t_mask) if order == "text_first" else (
        block_x, block_mask)
    ya, _, _ = attention(pre_i + ".attention", y, y, i_mask)
    ya, _, _ = attention(pre_i + ".crossattention", ya, context, context_mask)
    y = ffn(pre_i, ya)
  tokens.append((y.shape[1], x.shape[1]))
  pooled = torch.cat([
      torch.tanh(lin("cross_modal_text_pooler.dense", x[:, 0])),
      torch.tanh(lin("cross_modal_image_pooler.dense", y[:, 0]))], -1)
  h = lin("vqa_classifier.0", pooled)
  h = torch.nn.functional.gelu(norm("vqa_classifier.1", h))
  return lin("vqa_classifier.3", h).numpy(), tokens


METER_CASES = {
    # (layers, p, m, t, fusion_order)
    "text_first": ((0, 1), 0.2, 0.2, 0.2, "text_first"),
    "no_image_merge": ((0, 1), 0.3, 0.0, 0.2, "text_first"),
}


@pytest.mark.parametrize("case", sorted(METER_CASES))
def test_official_meter_pumer_equals_pytorch_reference(case):
  from pumer_jax import convert
  from tests.test_meter_parity import (
      HEADS, hf_clip, hf_roberta, official_state_dict, pixels, text_inputs)
  layers, p, m, t, order = METER_CASES[case]
  sd = official_state_dict(hf_clip(), hf_roberta())
  ids, mask = text_inputs()
  pix = pixels(32).transpose(0, 2, 3, 1)
  reduce = ReduceConfig(method="pumer", layers=layers, prune_ratio=p,
                        image_merge_ratio=m, text_merge_ratio=t)
  model, variables = convert.meter_from_official(
      sd, **HEADS, reduce=reduce, fusion_order=order)
  out = model.apply(variables, input_ids=ids, attention_mask=mask,
                    pixel_values=pix, output_hidden_states=True)
  hidden = out["hidden_states"]
  text = torch.from_numpy(np.array(hidden["fusion_text"][0]))
  image = torch.from_numpy(np.array(hidden["fusion_image"][0]))
  with torch.no_grad():
    want, tokens = meter_reference_fusion(
        sd, text, image, torch.from_numpy(mask), layers, p, m, t, order)
  got = list(zip(out["image_tokens"].tolist(), out["text_tokens"].tolist()))
  assert got == tokens
  np.testing.assert_allclose(out["logits"], want, atol=1e-4, rtol=0)
