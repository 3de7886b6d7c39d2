"""METER's encoders against Hugging Face CLIP / RoBERTa (PyTorch), and the
official checkpoint's key table, on small random configs."""

import flax
import jax
import numpy as np
import pytest
import torch
import transformers

from pumer_jax import convert
from pumer_jax.convert import cli as convert_cli
from pumer_jax.models import MeterConfig

TOL = 1e-4
# Head counts are not in a state dict's shapes; METER's are 64 wide.
HEADS = dict(vision_num_heads=4, text_num_heads=4, num_attention_heads=4)
FUSION = dict(hidden_size=32, num_fusion_layers=2, num_attention_heads=4,
              intermediate_size=40, head="vqa", num_labels=5)


def _randomize(model, seed):
  torch.manual_seed(seed)
  with torch.no_grad():  # random everything, incl. zero-initialised biases
    for param in model.parameters():
      param.normal_(0.0, 0.2)
  return model.eval()


def hf_clip(num_layers=3):
  config = transformers.CLIPVisionConfig(
      hidden_size=32, intermediate_size=48, num_hidden_layers=num_layers,
      num_attention_heads=4, image_size=32, patch_size=8)
  return _randomize(transformers.CLIPVisionModel(config), 0)


def hf_roberta():
  config = transformers.RobertaConfig(
      vocab_size=60, hidden_size=24, num_hidden_layers=2,
      num_attention_heads=4, intermediate_size=36,
      max_position_embeddings=20, type_vocab_size=1)
  return _randomize(transformers.RobertaModel(config), 1)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("meter_hf")
  clip, roberta = hf_clip(), hf_roberta()
  clip.save_pretrained(root / "clip")
  roberta.save_pretrained(root / "roberta")
  return root / "clip", root / "roberta", clip, roberta


def text_inputs(seed=2):
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, 60, size=(3, 9))
  mask = np.ones((3, 9), np.int64)
  mask[1, 5:] = 0
  mask[2, 2:] = 0
  ids[mask == 0] = 1  # RoBERTa's padding id
  ids[:, 0] = 0  # <s>
  return ids, mask


def pixels(size, seed=3):
  return np.random.default_rng(seed).normal(
      size=(3, 3, size, size)).astype(np.float32)


def run_meter(model, variables, ids, mask, pix):
  apply = jax.jit(lambda v, i, m, p: model.apply(
      v, input_ids=i, attention_mask=m, pixel_values=p,
      output_hidden_states=True))
  return apply(variables, ids.astype(np.int32), mask.astype(np.int32),
               pix.transpose(0, 2, 3, 1))


def test_encoders_match_hugging_face(hf_dirs):
  clip_dir, roberta_dir, clip, roberta = hf_dirs
  config = MeterConfig(vision_num_layers=3, text_num_layers=2, **FUSION)
  model, variables = convert.meter_from_hf(clip_dir, roberta_dir, config)
  ids, mask = text_inputs()
  pix = pixels(32)
  out = run_meter(model, variables, ids, mask, pix)
  with torch.no_grad():
    v = clip(pixel_values=torch.from_numpy(pix), output_hidden_states=True)
    t = roberta(input_ids=torch.from_numpy(ids),
                attention_mask=torch.from_numpy(mask),
                output_hidden_states=True)
  vision = out["hidden_states"]["vision"]
  assert len(vision) == len(v.hidden_states) == 4
  for ours, theirs in zip(vision, v.hidden_states):
    np.testing.assert_allclose(ours, theirs.numpy(), atol=TOL, rtol=TOL)
  text = out["hidden_states"]["text"]
  assert len(text) == len(t.hidden_states) == 3
  for ours, theirs in zip(text, t.hidden_states):
    # Padded rows too: both mask the same keys.
    np.testing.assert_allclose(ours, theirs.numpy(), atol=TOL, rtol=TOL)
  assert out["logits"].shape == (3, 5)


def test_interpolated_positions_match_hugging_face(hf_dirs):
  """A 48x48 input on a 32x32 table: PyTorch's bicubic, a = -0.75."""
  clip_dir, roberta_dir, clip, _ = hf_dirs
  config = MeterConfig(vision_num_layers=3, text_num_layers=2, **FUSION)
  model, variables = convert.meter_from_hf(clip_dir, roberta_dir, config)
  ids, mask = text_inputs()
  pix = pixels(48)
  out = run_meter(model, variables, ids, mask, pix)
  with torch.no_grad():
    v = clip(pixel_values=torch.from_numpy(pix), interpolate_pos_encoding=True)
  np.testing.assert_allclose(out["hidden_states"]["vision"][-1],
                             v.last_hidden_state.numpy(), atol=TOL, rtol=TOL)


def test_meter_keeps_the_first_clip_layers(hf_dirs):
  """METER drops CLIP's last block: vision_num_layers=2 of the 3 saved."""
  clip_dir, roberta_dir, clip, _ = hf_dirs
  config = MeterConfig(vision_num_layers=2, text_num_layers=2, **FUSION)
  model, variables = convert.meter_from_hf(clip_dir, roberta_dir, config)
  ids, mask = text_inputs()
  pix = pixels(32)
  out = run_meter(model, variables, ids, mask, pix)
  with torch.no_grad():
    v = clip(pixel_values=torch.from_numpy(pix), output_hidden_states=True)
  np.testing.assert_allclose(out["hidden_states"]["vision"][-1],
                             v.hidden_states[2].numpy(), atol=TOL, rtol=TOL)
  with pytest.raises(ValueError, match="exceeds the CLIP checkpoint"):
    convert.meter_from_hf(clip_dir, roberta_dir,
                          config.replace(vision_num_layers=4))


# ---------------------------------------------------------------------------
# The official METER checkpoint format
# ---------------------------------------------------------------------------


def official_state_dict(clip, roberta, *, head="vqa", num_labels=5,
                        seed=4):
  """A METERTransformerSS state dict in the official names and layouts.

  The encoders are the Hugging Face models renamed into OpenAI-CLIP and
  METER names (q/k/v fused into `in_proj`); the fusion and head are random.
  """
  rng = np.random.default_rng(seed)
  rand = lambda *shape: rng.normal(0, 0.2, shape).astype(np.float32)
  sd = {}
  c = {k: v.numpy() for k, v in clip.state_dict().items()}
  v, o = "", "vit_model.visual."
  sd[o + "conv1.weight"] = c[v + "embeddings.patch_embedding.weight"]
  sd[o + "class_embedding"] = c[v + "embeddings.class_embedding"]
  sd[o + "positional_embedding"] = c[v + "embeddings.position_embedding.weight"]
  for ours, theirs in (("ln_pre", "pre_layrnorm"),
                       ("ln_post", "post_layernorm")):
    for p in ("weight", "bias"):
      sd[f"{o}{ours}.{p}"] = c[f"{v}{theirs}.{p}"]
  for i in range(clip.config.num_hidden_layers):
    src, dst = f"{v}encoder.layers.{i}.", f"{o}transformer.resblocks.{i}."
    for p in ("weight", "bias"):
      sd[dst + f"attn.in_proj_{p}"] = np.concatenate(
          [c[src + f"self_attn.{n}_proj.{p}"] for n in "qkv"])
      sd[dst + f"attn.out_proj.{p}"] = c[src + f"self_attn.out_proj.{p}"]
      sd[dst + f"ln_1.{p}"] = c[src + f"layer_norm1.{p}"]
      sd[dst + f"ln_2.{p}"] = c[src + f"layer_norm2.{p}"]
      sd[dst + f"mlp.c_fc.{p}"] = c[src + f"mlp.fc1.{p}"]
      sd[dst + f"mlp.c_proj.{p}"] = c[src + f"mlp.fc2.{p}"]
  # Leftovers of CLIP's text tower that METER saves and never uses.
  sd["vit_model.positional_embedding"] = rand(77, 16)
  sd["vit_model.ln_final.weight"] = rand(16)
  sd["vit_model.ln_final.bias"] = rand(16)
  for k, value in roberta.state_dict().items():
    sd["text_transformer." + k] = value.numpy()
  sd["text_transformer.embeddings.position_ids"] = np.arange(20)[None]
  h, dv, dt, ff = 32, clip.config.hidden_size, roberta.config.hidden_size, 40
  sd["cross_modal_text_transform.weight"] = rand(h, dt)
  sd["cross_modal_image_transform.weight"] = rand(h, dv)
  for m in ("text", "image"):
    sd[f"cross_modal_{m}_transform.bias"] = rand(h)
    sd[f"cross_modal_{m}_pooler.dense.weight"] = rand(h, h)
    sd[f"cross_modal_{m}_pooler.dense.bias"] = rand(h)
    for i in range(2):
      pre = f"cross_modal_{m}_layers.{i}."
      for part in ("attention", "crossattention"):
        for n in ("query", "key", "value"):
          sd[f"{pre}{part}.self.{n}.weight"] = rand(h, h)
          sd[f"{pre}{part}.self.{n}.bias"] = rand(h)
        sd[f"{pre}{part}.output.dense.weight"] = rand(h, h)
        sd[f"{pre}{part}.output.dense.bias"] = rand(h)
        sd[f"{pre}{part}.output.LayerNorm.weight"] = rand(h)
        sd[f"{pre}{part}.output.LayerNorm.bias"] = rand(h)
      sd[pre + "intermediate.dense.weight"] = rand(ff, h)
      sd[pre + "intermediate.dense.bias"] = rand(ff)
      sd[pre + "output.dense.weight"] = rand(h, ff)
      sd[pre + "output.dense.bias"] = rand(h)
      sd[pre + "output.LayerNorm.weight"] = rand(h)
      sd[pre + "output.LayerNorm.bias"] = rand(h)
  images = 2 if head == "nlvr2" else 1
  sd["token_type_embeddings.weight"] = rand(images + 1, h)
  if head == "retrieval":
    sd["rank_output.weight"] = rand(1, 2 * h)
    sd["rank_output.bias"] = rand(1)
    sd["itm_score.fc.weight"] = rand(2, 2 * h)
    sd["itm_score.fc.bias"] = rand(2)
  else:
    name = {"vqa": "vqa", "ve": "snli", "nlvr2": "nlvr2"}[head]
    sd[f"{name}_classifier.0.weight"] = rand(2 * h, 2 * h * images)
    sd[f"{name}_classifier.0.bias"] = rand(2 * h)
    sd[f"{name}_classifier.1.weight"] = rand(2 * h)
    sd[f"{name}_classifier.1.bias"] = rand(2 * h)
    sd[f"{name}_classifier.3.weight"] = rand(num_labels, 2 * h)
    sd[f"{name}_classifier.3.bias"] = rand(num_labels)
  return sd


def _flat(params):
  return {"/".join(k): np.asarray(v)
          for k, v in flax.traverse_util.flatten_dict(params).items()}


def test_official_checkpoint_maps_every_key(hf_dirs, tmp_path):
  _, _, clip, roberta = hf_dirs
  sd = official_state_dict(clip, roberta)
  # As Lightning saves it, loaded back with weights_only=True.
  path = tmp_path / "meter.ckpt"
  torch.save({"state_dict": {k: torch.from_numpy(np.asarray(v))
                             for k, v in sd.items()}, "epoch": 9}, path)
  model, variables = convert.meter_from_official(path, **HEADS)
  c = model.config
  assert (c.vision_num_layers, c.text_num_layers, c.num_fusion_layers) == (
      3, 2, 2)
  assert (c.head, c.num_labels, c.image_size, c.patch_size) == (
      "vqa", 5, 32, 8)
  flat = _flat(variables["params"])
  # The fused CLIP projection split into query/key/value, transposed.
  q, k, _ = np.split(sd["vit_model.visual.transformer.resblocks.1.attn."
                        "in_proj_weight"], 3)
  np.testing.assert_array_equal(
      flat["meter/vision/layer_1/self_attn/query/kernel"], q.T)
  np.testing.assert_array_equal(
      flat["meter/vision/layer_1/self_attn/key/kernel"], k.T)
  np.testing.assert_array_equal(
      flat["meter/image_layer_1/crossattention_norm/scale"],
      sd["cross_modal_image_layers.1.crossattention.output.LayerNorm.weight"])
  np.testing.assert_array_equal(
      flat["meter/text_layer_0/mlp/fc2/kernel"],
      sd["cross_modal_text_layers.0.output.dense.weight"].T)
  np.testing.assert_array_equal(flat["classifier/out/bias"],
                                sd["vqa_classifier.3.bias"])
  # Numerically: the renamed encoders still compute what Hugging Face does.
  ids, mask = text_inputs()
  pix = pixels(32)
  out = run_meter(model, variables, ids, mask, pix)
  with torch.no_grad():
    v = clip(pixel_values=torch.from_numpy(pix))
    t = roberta(input_ids=torch.from_numpy(ids),
                attention_mask=torch.from_numpy(mask))
  np.testing.assert_allclose(out["hidden_states"]["vision"][-1],
                             v.last_hidden_state.numpy(), atol=TOL, rtol=TOL)
  np.testing.assert_allclose(out["hidden_states"]["text"][-1],
                             t.last_hidden_state.numpy(), atol=TOL, rtol=TOL)


@pytest.mark.parametrize("head", ["ve", "nlvr2", "retrieval"])
def test_official_heads(hf_dirs, head):
  _, _, clip, roberta = hf_dirs
  model, variables = convert.meter_from_official(
      official_state_dict(clip, roberta, head=head, num_labels=3), **HEADS)
  assert model.config.head == head
  assert model.config.num_images == (2 if head == "nlvr2" else 1)


def test_official_checkpoint_errors(hf_dirs, tmp_path):
  _, _, clip, roberta = hf_dirs
  sd = official_state_dict(clip, roberta)
  with pytest.raises(ValueError, match="neither mapped nor listed"):
    convert.meter_from_official({**sd, "cross_modal_extra.weight": sd[
        "cross_modal_text_transform.bias"]}, **HEADS)
  del sd["cross_modal_text_layers.1.output.LayerNorm.bias"]
  with pytest.raises(ValueError, match="missing from the checkpoint"):
    convert.meter_from_official(sd, **HEADS)
  with pytest.raises(FileNotFoundError, match="not a file"):
    convert.meter_from_official(tmp_path / "absent.ckpt")
  corrupt = tmp_path / "corrupt.ckpt"
  corrupt.write_bytes(b"not a checkpoint")
  with pytest.raises(ValueError, match="corrupt"):
    convert.meter_from_official(corrupt)
  with pytest.raises(ValueError, match="not a METER"):
    convert.meter_from_official({"vilt.pooler.dense.weight": np.zeros((2, 2))})


def test_convert_cli_writes_a_loadable_checkpoint(hf_dirs, tmp_path):
  from pumer_jax.models import saved
  clip_dir, roberta_dir, clip, roberta = hf_dirs
  sd = official_state_dict(clip, roberta)
  path = tmp_path / "meter.ckpt"
  torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()},
             path)
  out = tmp_path / "out"
  convert_cli.main(["meter", "--ckpt", str(path), "--out", str(out),
                "--num_heads", "4"])
  model, variables = saved.load_model(out)
  assert model.config.num_fusion_layers == 2
  with pytest.raises(FileExistsError):
    convert_cli.main(["meter", "--ckpt", str(path), "--out", str(out),
                  "--num_heads", "4"])
  with pytest.raises(SystemExit):  # an official and a Hugging Face source
    convert_cli.main(["meter", "--ckpt", str(path), "--clip_dir",
                  str(clip_dir), "--out", str(tmp_path / "o3")])
