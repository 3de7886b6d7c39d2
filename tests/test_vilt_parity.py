"""Numerical parity with Hugging Face ViLT (PyTorch) on small random configs."""

import json

import numpy as np
import pytest
import torch
import transformers

from pumer_jax.convert import vilt_from_hf
from pumer_jax.models import ReduceConfig

HF_HEADS = {
    "vqa": transformers.ViltForQuestionAnswering,
    "ve": transformers.ViltForQuestionAnswering,  # 3-way, same head form
    "nlvr2": transformers.ViltForImagesAndTextClassification,
    "retrieval": transformers.ViltForImageAndTextRetrieval,
    "mlm": transformers.ViltForMaskedLM,
}
NUM_LABELS = {"vqa": 11, "ve": 3, "nlvr2": 2, "retrieval": 1, "mlm": 2}


def small_hf_config(head: str) -> transformers.ViltConfig:
  labels = NUM_LABELS[head]
  return transformers.ViltConfig(
      vocab_size=99, hidden_size=32, num_hidden_layers=3,
      num_attention_heads=4, intermediate_size=48, max_position_embeddings=12,
      image_size=64, patch_size=16, modality_type_vocab_size=3,
      num_images=2 if head == "nlvr2" else -1,
      id2label={i: str(i) for i in range(labels)},
  )


def save_random_hf_model(head: str, directory, seed: int = 0):
  torch.manual_seed(seed)
  model = HF_HEADS[head](small_hf_config(head)).eval()
  with torch.no_grad():  # random everything, incl. zero-initialised tables
    for param in model.parameters():
      param.normal_(0.0, 0.2)
  model.save_pretrained(directory)
  return model


def inputs(head: str, height: int, width: int, seed: int = 1):
  rng = np.random.default_rng(seed)
  batch, length = 3, 10
  ids = rng.integers(1, 99, size=(batch, length))
  mask = np.ones((batch, length), np.int64)
  mask[1, 6:] = 0  # padded text
  mask[2, 3:] = 0
  images = 2 if head == "nlvr2" else 1
  pixels = rng.normal(size=(batch, images, 3, height, width)).astype(np.float32)
  if head != "nlvr2":
    pixels = pixels[:, 0]
  return ids, mask, pixels


def run_hf(model, head, ids, mask, pixels):
  pixel_mask = torch.ones(pixels.shape[:1] + pixels.shape[-2:],
                          dtype=torch.long)
  kwargs = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                pixel_values=torch.tensor(pixels))
  if head == "nlvr2":
    kwargs["pixel_mask"] = pixel_mask[:, None].repeat(1, 2, 1, 1)
  else:
    kwargs["pixel_mask"] = pixel_mask
  with torch.no_grad():
    if head == "mlm":
      out = model.vilt(**kwargs)
      return None, out.pooler_output.numpy()
    out = model(**kwargs, output_hidden_states=True)
    if head == "nlvr2":
      return out.logits.numpy(), None
    pooled = model.vilt(**kwargs).pooler_output.numpy()
    return out.logits.numpy(), pooled


def to_nhwc(pixels):
  return np.moveaxis(pixels, -3, -1)


@pytest.mark.parametrize("head", ["vqa", "ve", "nlvr2", "retrieval", "mlm"])
@pytest.mark.parametrize("size", [(64, 64), (48, 96)])
def test_parity_with_transformers(tmp_path, head, size):
  hf_model = save_random_hf_model(head, tmp_path)
  ids, mask, pixels = inputs(head, *size)
  want_logits, want_pooled = run_hf(hf_model, head, ids, mask, pixels)

  model, variables = vilt_from_hf(tmp_path)
  assert model.config.head == ("none" if head == "mlm" else
                               "vqa" if head == "ve" else head)
  out = model.apply(variables, input_ids=ids, attention_mask=mask,
                    token_type_ids=np.zeros_like(ids),
                    pixel_values=to_nhwc(pixels), train=False)
  if want_logits is not None:
    assert out["logits"].shape == want_logits.shape
    np.testing.assert_allclose(out["logits"], want_logits, atol=1e-4, rtol=0)
  if want_pooled is not None:
    np.testing.assert_allclose(out["pooled"], want_pooled, atol=1e-4, rtol=0)
  if head == "nlvr2":
    # Each image's pooled output equals HF run with that image alone.
    for i in range(2):
      single = hf_model.vilt(
          input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
          pixel_values=torch.tensor(pixels[:, i]),
          pixel_mask=torch.ones(pixels.shape[:1] + pixels.shape[-2:],
                                dtype=torch.long),
          image_token_type_idx=i + 1).pooler_output.detach().numpy()
      d = single.shape[-1]
      np.testing.assert_allclose(out["pooled"][:, i * d:(i + 1) * d], single,
                                 atol=1e-4, rtol=0)


def test_pytorch_bin_checkpoint_and_reducer_override(tmp_path):
  hf_model = save_random_hf_model("vqa", tmp_path)
  (tmp_path / "model.safetensors").unlink()
  torch.save(hf_model.state_dict(), tmp_path / "pytorch_model.bin")
  ids, mask, pixels = inputs("vqa", 64, 64)
  want, _ = run_hf(hf_model, "vqa", ids, mask, pixels)
  model, variables = vilt_from_hf(tmp_path)
  out = model.apply(variables, input_ids=ids, attention_mask=mask,
                    pixel_values=to_nhwc(pixels))
  np.testing.assert_allclose(out["logits"], want, atol=1e-4, rtol=0)
  # The same weights run reduced, off the shelf.
  reduced, same = vilt_from_hf(tmp_path, reduce=ReduceConfig(
      method="pumer", layers=(1,), prune_ratio=0.2, image_merge_ratio=0.2,
      text_merge_ratio=0.2))
  out = reduced.apply(same, input_ids=ids, attention_mask=mask,
                      pixel_values=to_nhwc(pixels))
  # 17 image tokens: prune round(3.4) = 3, merge round(3.4) = 3 -> 11;
  # 10 text tokens: merge round(2.0) = 2 -> 8.
  assert out["tokens"].tolist() == [27, 27, 19, 19]


def test_unexpected_and_missing_keys_are_errors(tmp_path):
  from safetensors.numpy import load_file, save_file
  save_random_hf_model("vqa", tmp_path)
  state = load_file(str(tmp_path / "model.safetensors"))
  state["vilt.encoder.layer.0.attention.mystery.weight"] = np.zeros(2)
  save_file(state, str(tmp_path / "model.safetensors"))
  with pytest.raises(ValueError, match="neither mapped nor listed"):
    vilt_from_hf(tmp_path)
  del state["vilt.encoder.layer.0.attention.mystery.weight"]
  del state["classifier.3.weight"]
  save_file(state, str(tmp_path / "model.safetensors"))
  with pytest.raises(ValueError, match="classifier/out/kernel"):
    vilt_from_hf(tmp_path)


def test_head_checkpoint_mismatch(tmp_path):
  save_random_hf_model("retrieval", tmp_path)
  config = json.loads((tmp_path / "config.json").read_text())
  config["architectures"] = ["ViltForQuestionAnswering"]
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="head/checkpoint mismatch"):
    vilt_from_hf(tmp_path)
  with pytest.raises(FileNotFoundError, match="config.json"):
    vilt_from_hf(tmp_path / "nowhere")
