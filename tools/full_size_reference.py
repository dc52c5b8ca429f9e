#!/usr/bin/env python3
"""Reference logits of a full-size torchvision ResNet, for comparison with dwlth.

Writes three files:

* ``--weights-out W.pth``: the torchvision ``state_dict`` saved with
  ``torch.save`` (what ``dwlth import --format torchvision`` reads); with
  ``--weights-safetensors-out`` the same tensors also as safetensors;
* ``--input-out X.safetensors``: tensor ``input`` [N,3,H,W] of raw pixels in
  [0,1] (seeded uniform noise);
* ``--logits-out Y.safetensors``: tensor ``logits`` [N,1000] of
  ``model.eval()`` on the input normalised with the ImageNet statistics
  (mean 0.485,0.456,0.406 / std 0.229,0.224,0.225), i.e. what a dwlth model
  imported from torchvision weights (normalisation built in) should output.

Weights: ``--checkpoint PATH`` loads a torchvision checkpoint file you already
have on disk (e.g. ``resnet50-11ad3fa6.pth``; nothing is downloaded);
without it the model is torchvision's random initialisation under ``--seed``,
with every BatchNorm given random affine parameters and running statistics
(``--plain-bn`` keeps the default ones) so that eval mode is non-trivial.

Example (repository root)::

    tools/.venv/bin/python tools/full_size_reference.py --arch resnet50 \\
        --weights-out /tmp/W.pth --input-out /tmp/X.safetensors \\
        --logits-out /tmp/Y_ref.safetensors
    dwlth import --format torchvision --arch resnet50 /tmp/W.pth /tmp/W.safetensors
    dwlth predict --arch resnet50 --weights /tmp/W.safetensors \\
        --input /tmp/X.safetensors --output /tmp/Y.safetensors
    tools/.venv/bin/python tools/full_size_reference.py --compare \\
        /tmp/Y_ref.safetensors /tmp/Y.safetensors
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn as nn
import torchvision
from safetensors.torch import load_file, save_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101")


def load_checkpoint(path: str) -> dict:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    return obj


def randomize_batchnorm(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(7)


def compare(ref_path: str, got_path: str, key_ref: str, key_got: str) -> int:
    ref = load_file(ref_path)[key_ref].double()
    got_file = load_file(got_path)
    if key_got not in got_file:
        if len(got_file) != 1:
            print(f"{got_path}: no tensor {key_got!r} (has {sorted(got_file)})")
            return 2
        key_got = next(iter(got_file))
    got = got_file[key_got].double()
    if ref.shape != got.shape:
        print(f"shape mismatch: {tuple(ref.shape)} vs {tuple(got.shape)}")
        return 1
    diff = (ref - got).abs()
    rel = diff.max().item() / max(ref.abs().max().item(), 1e-12)
    same_top1 = torch.equal(ref.argmax(-1), got.argmax(-1))
    print(f"max |diff| = {diff.max().item():.3e}, max |ref| = {ref.abs().max().item():.3e}, "
          f"relative = {rel:.3e}, top-1 equal = {same_top1}")
    return 0 if rel < 1e-4 and same_top1 else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=ARCHS, default="resnet50")
    ap.add_argument("--weights-out", help="torch.save(state_dict) destination (.pth)")
    ap.add_argument("--weights-safetensors-out", help="optional: the state_dict as safetensors")
    ap.add_argument("--input-out", help="safetensors file with tensor 'input' (raw [0,1] pixels)")
    ap.add_argument("--logits-out", help="safetensors file with tensor 'logits'")
    ap.add_argument("--checkpoint", help="torchvision state_dict file to use instead of random init")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=224, help="input height and width")
    ap.add_argument("--plain-bn", action="store_true",
                    help="random init: keep torchvision's default BatchNorm values")
    ap.add_argument("--compare", nargs=2, metavar=("REF", "GOT"),
                    help="only compare two logits files and exit (0 = match)")
    ap.add_argument("--compare-key", default="logits",
                    help="tensor name in GOT for --compare (default logits; a file holding a "
                         "single tensor is read whatever its name)")
    args = ap.parse_args(argv)

    if args.compare:
        return compare(args.compare[0], args.compare[1], "logits", args.compare_key)
    if not (args.weights_out and args.input_out and args.logits_out):
        ap.error("--weights-out, --input-out and --logits-out are required")

    torch.manual_seed(args.seed)
    model = getattr(torchvision.models, args.arch)()  # weights=None: nothing is downloaded
    if args.checkpoint:
        model.load_state_dict(load_checkpoint(args.checkpoint), strict=True)
        source = args.checkpoint
    else:
        if not args.plain_bn:
            randomize_batchnorm(model)
        source = f"random init, seed {args.seed}" + ("" if args.plain_bn else ", random BN")
    model = model.float().eval()

    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(model.state_dict(), args.weights_out)
    if args.weights_safetensors_out:
        save_file(sd, args.weights_safetensors_out)

    gen = torch.Generator().manual_seed(args.seed + 1)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=gen)
    mean = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD)[None, :, None, None]
    with torch.no_grad():
        logits = model((x - mean) / std)

    meta = {"arch": args.arch, "weights": source, "torch_version": torch.__version__,
            "normalization": "imagenet", "seed": str(args.seed)}
    save_file({"input": x}, args.input_out, metadata=meta)
    save_file({"logits": logits.contiguous()}, args.logits_out, metadata=meta)
    print(f"{args.arch} ({source}): logits {tuple(logits.shape)}, "
          f"top-1 {logits.argmax(-1).tolist()}, max |logit| {logits.abs().max().item():.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
