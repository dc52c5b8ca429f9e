#!/usr/bin/env python3
"""Generate the PyTorch golden fixture for dwlth-models' convolution (``dwlth_models::conv``).

For every case below, with ``g = torch.Generator().manual_seed(seed)``::

    x  = torch.randn(n, c_in, h, w, generator=g)
    wt = torch.randn(c_out, c_in, kh, kw, generator=g) * (2 / (c_in * kh * kw)) ** 0.5
    b  = torch.randn(c_out, generator=g)            # only when the case has a bias
    y  = F.conv2d(F.pad(x, (pad_left, pad_right, pad_top, pad_bottom)), wt, b,
                  stride=stride, dilation=dilation)
    gy = torch.randn(y.shape, generator=g)
    (y * gy).sum().backward()                        # x.grad, wt.grad, b.grad

All tensors float32 on the CPU. Keys: ``<case>.x``, ``.weight``, ``.bias``, ``.y``, ``.grad_y``,
``.grad_x``, ``.grad_weight``, ``.grad_bias``; the metadata entry ``<case>`` holds the options
as JSON (``stride``, ``padding`` as [[top, bottom], [left, right]], ``dilation``).

Usage: ``tools/.venv/bin/python tools/golden_conv.py [--out DIR]`` (default
``crates/dwlth-models/tests/golden/conv2d``); rerunning reproduces the file byte for byte.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from golden import DEFAULT_OUT, save_file, update_manifest

# name: (seed, n, c_in, h, w, c_out, kh, kw, stride, ((top, bottom), (left, right)), dilation, bias)
CASES = {
    # ResNet's 3×3 convolution, several images per product chunk (small maps, batch 24).
    "k3_s1": (1, 24, 8, 6, 6, 12, 3, 3, (1, 1), ((1, 1), (1, 1)), (1, 1), False),
    # ResNet's 3×3 convolution at 16 channels or more and 16 positions or more (Winograd's
    # F(4×4, 3×3) forward pass, its input gradient as one, and its weight gradient), odd height.
    "k3_s1_wide": (7, 3, 16, 9, 10, 24, 3, 3, (1, 1), ((1, 1), (1, 1)), (1, 1), True),
    # The downsampling 3×3 convolution, odd input size.
    "k3_s2": (2, 3, 5, 9, 7, 6, 3, 3, (2, 2), ((1, 1), (1, 1)), (1, 1), False),
    # The 1×1 projection shortcut, stride 2, and the 1×1 bottleneck convolution.
    "k1_s2": (3, 4, 6, 8, 8, 10, 1, 1, (2, 2), ((0, 0), (0, 0)), (1, 1), False),
    "k1_s1": (4, 1, 16, 5, 5, 8, 1, 1, (1, 1), ((0, 0), (0, 0)), (1, 1), True),
    # The ImageNet stem: 7×7, stride 2, padding 3.
    "k7_s2": (5, 2, 3, 15, 13, 4, 7, 7, (2, 2), ((3, 3), (3, 3)), (1, 1), False),
    # Beyond ResNet: rectangular kernel, asymmetric padding and stride, dilation, bias.
    "k3x2_asym": (6, 3, 4, 7, 8, 5, 3, 2, (1, 2), ((2, 0), (0, 1)), (2, 1), True),
}


def run_case(name: str, spec) -> tuple[dict, dict]:
    seed, n, c_in, h, w, c_out, kh, kw, stride, padding, dilation, has_bias = spec
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=g)
    wt = torch.randn(c_out, c_in, kh, kw, generator=g) * (2.0 / (c_in * kh * kw)) ** 0.5
    b = torch.randn(c_out, generator=g) if has_bias else None
    x.requires_grad_(True)
    wt.requires_grad_(True)
    if b is not None:
        b.requires_grad_(True)
    (top, bottom), (left, right) = padding
    y = F.conv2d(F.pad(x, (left, right, top, bottom)), wt, b, stride=stride, dilation=dilation)
    gy = torch.randn(y.shape, generator=g)
    (y * gy).sum().backward()
    tensors = {
        f"{name}.x": x.detach(),
        f"{name}.weight": wt.detach(),
        f"{name}.y": y.detach(),
        f"{name}.grad_y": gy,
        f"{name}.grad_x": x.grad,
        f"{name}.grad_weight": wt.grad,
    }
    if b is not None:
        tensors[f"{name}.bias"] = b.detach()
        tensors[f"{name}.grad_bias"] = b.grad
    meta = {name: json.dumps({"stride": list(stride), "padding": [list(p) for p in padding],
                              "dilation": list(dilation)})}
    return tensors, meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT / "conv2d")
    args = ap.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    tensors, meta = {}, {}
    for name, spec in CASES.items():
        t, m = run_case(name, spec)
        tensors.update({k: v.contiguous() for k, v in t.items()})
        meta.update(m)
    save_file(tensors, str(args.out / "conv2d.safetensors"), metadata=meta)
    desc = ("conv2d forward and gradients (x, weight, bias) of sum(y * grad_y) for "
            + ", ".join(CASES) + "; options in the metadata")
    for f in update_manifest(args.out, {"conv2d.safetensors": desc}, "tools/golden_conv.py"):
        print(f"{f['name']}: {f['bytes']} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
