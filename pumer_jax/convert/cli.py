"""The converter's command line: a PyTorch checkpoint -> an orbax model dir.

  python -m pumer_jax.convert vilt --hf_dir DIR --out CKPT_DIR
  python -m pumer_jax.convert meter --ckpt meter_clip16_288_roberta_vqa.ckpt \
      --out CKPT_DIR
  python -m pumer_jax.convert meter --clip_dir DIR --roberta_dir DIR \
      --head vqa --num_labels 3129 --image_size 384 --out CKPT_DIR

A non-empty --out is refused unless --overwrite is given.
"""

from __future__ import annotations

import argparse
import pathlib

from pumer_jax.convert.mapping import read_json
from pumer_jax.convert.meter_hf import meter_from_hf
from pumer_jax.convert.meter_official import meter_from_official
from pumer_jax.convert.vilt_hf import vilt_from_hf
from pumer_jax.models import meter as meter_lib
from pumer_jax.models import param_count, saved

def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="python -m pumer_jax.convert",
      description="Convert a PyTorch checkpoint to an orbax model checkpoint.")
  sub = parser.add_subparsers(dest="family", required=True)
  vilt = sub.add_parser("vilt", help="ViLT (dandelin/vilt-b32-*)")
  vilt.add_argument("--hf_dir", required=True,
                    help="local dir with config.json + model.safetensors")
  meter = sub.add_parser(
      "meter", help="METER: an official checkpoint (--ckpt), or encoders "
      "from Hugging Face CLIP + RoBERTa dirs with a fresh fusion")
  meter.add_argument("--ckpt", help="official METER .ckpt (Lightning)")
  meter.add_argument("--clip_dir", help="Hugging Face CLIP dir")
  meter.add_argument("--roberta_dir", help="Hugging Face RoBERTa dir")
  meter.add_argument("--head", default="vqa",
                     help="with --clip_dir: vqa|ve|nlvr2|retrieval|none")
  meter.add_argument("--num_labels", type=int, default=3129)
  meter.add_argument("--vision_layers", type=int, default=0,
                     help="CLIP blocks to keep (0: all but the last, as "
                     "METER)")
  meter.add_argument("--num_heads", type=int, default=0,
                     help="with --ckpt: heads per attention in every module "
                     "(0: width / 64, as METER)")
  meter.add_argument("--image_size", type=int, default=0,
                     help="input resolution to pin (0: the checkpoint's)")
  for p in (vilt, meter):
    p.add_argument("--out", required=True, help="output checkpoint dir")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out")
  args = parser.parse_args(argv)
  if args.family == "vilt":
    model, variables = vilt_from_hf(args.hf_dir)
  elif args.ckpt:
    if args.clip_dir or args.roberta_dir:
      parser.error("give either --ckpt or --clip_dir/--roberta_dir.")
    overrides = {}
    if args.image_size:
      overrides["input_size"] = (args.image_size,) * 2
    if args.num_heads:
      overrides.update(vision_num_heads=args.num_heads,
                       text_num_heads=args.num_heads,
                       num_attention_heads=args.num_heads)
    model, variables = meter_from_official(args.ckpt, **overrides)
  elif args.clip_dir and args.roberta_dir:
    clip_json = read_json(pathlib.Path(args.clip_dir) / "config.json")
    clip_layers = (clip_json.get("vision_config") or clip_json).get(
        "num_hidden_layers", 12)
    roberta_json = read_json(pathlib.Path(args.roberta_dir) / "config.json")
    config = meter_lib.MeterConfig(
        vision_num_layers=args.vision_layers or clip_layers - 1,
        text_num_layers=roberta_json.get("num_hidden_layers", 12),
        head=args.head, num_labels=args.num_labels,
        num_images=2 if args.head == "nlvr2" else 1,
        input_size=(args.image_size,) * 2 if args.image_size else None)
    model, variables = meter_from_hf(args.clip_dir, args.roberta_dir, config)
  else:
    parser.error("meter needs --ckpt, or both --clip_dir and --roberta_dir.")
  out = saved.save_model(args.out, model.config, variables["params"],
                              overwrite=args.overwrite)
  count = param_count(variables)
  print(f"wrote {out} ({model.config.head} head, {count:,} parameters)")

