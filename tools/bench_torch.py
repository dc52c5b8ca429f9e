#!/usr/bin/env python3
"""The measurements of `cargo run --release --example bench -- --json`, in PyTorch.

Same shapes and hyper-parameters: ResNet-18 with the CIFAR stem (torchvision topology, width
64) on 32x32 inputs, SGD momentum 0.9; PGD-10 (eps 8/255, alpha 2/255, random start, BatchNorm
in train mode while crafting, as the reference code) for the adversarial step; PGD-20 in eval
mode for evaluation; torchvision ResNet-50 inference at 224x224, batch 8; the 20 % global
magnitude threshold over ResNet-50's conv weights (torch.kthvalue). Prints JSON with the same
keys. `r50_infer_224_b8_img_s` is dense inference at batch 8, the batch of the sparse section of
the Rust bench, so `r50_sparse90_infer_img_s` over it compares a 90 %-sparse ticket on
`SparseResNet` with dense PyTorch. `--compile` measures PyTorch at its best instead: models and
inputs in channels_last and every model wrapped in `torch.compile` (compilation happens in the
untimed warm-up). Run them in one session on a quiet machine, interleaved with `bench`:

    tools/.venv/bin/python tools/bench_torch.py --batch 128 --repeats 1 [--compile]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torchvision

from golden import ResNet


def timed(repeats, fn):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def pgd(model, x, y, eps, alpha, steps):
    loss = nn.CrossEntropyLoss()
    xa = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        xa.requires_grad_(True)
        (g,) = torch.autograd.grad(loss(model(xa), y), xa)
        xa = xa.detach() + alpha * g.sign()
        xa = torch.min(torch.max(xa, x - eps), x + eps).clamp(0, 1)
    return xa.detach()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="channels_last + torch.compile")
    ap.add_argument("--only", choices=["pgd10"], help="the PGD-10 training step alone (the reference of `bench --only tickets`)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {"pytorch": torch.__version__, "mode": "channels_last+compile" if args.compile else "eager"}
    fmt = torch.channels_last if args.compile else torch.contiguous_format

    def best(model):
        """The model as this mode runs it (the parameters stay the model's own)."""
        model = model.to(memory_format=fmt)
        return torch.compile(model) if args.compile else model
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    # The fastest of ten products after a warm-up: the machine's peak, as in `bench`.
    a @ b
    secs = min(timed(1, lambda: a @ b) for _ in range(10))
    matmul = 2 * 2048**3 / secs / 1e9
    out["matmul_2048_gflop_s"] = matmul

    torch.manual_seed(0)
    r18 = ResNet("resnet18", 64, "cifar", 3, 10)
    x = torch.rand(args.batch, 3, 32, 32).to(memory_format=fmt)
    y = torch.arange(args.batch) % 10
    ce = nn.CrossEntropyLoss()
    steps = [("r18_train_b{b}_img_s", False), ("r18_pgd10_train_b{b}_img_s", True)]
    for key, adversarial in steps[1:] if args.only == "pgd10" else steps:
        model = ResNet("resnet18", 64, "cifar", 3, 10)
        model.load_state_dict(r18.state_dict())
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        run = best(model)

        def step():
            inputs = pgd(run, x, y, 8 / 255, 2 / 255, 10) if adversarial else x
            opt.zero_grad()
            ce(run(inputs), y).backward()
            opt.step()

        rate = args.batch / timed(args.repeats, step)
        out[key.replace("{b}", str(args.batch))] = rate
        if not adversarial:
            out["r18_train_gflop_s"] = 3.3 * rate
            out["r18_train_fraction_of_matmul"] = 3.3 * rate / matmul

    if args.only == "pgd10":
        print(json.dumps(out, indent=2))
        return
    r18.eval()
    for p in r18.parameters():
        p.requires_grad_(False)
    r18_run = best(r18)

    def evaluate():
        xa = pgd(r18_run, x, y, 8 / 255, 2 / 255, 20)
        with torch.no_grad():
            r18_run(xa)

    out[f"r18_pgd20_eval_b{args.batch}_img_s"] = args.batch / timed(args.repeats, evaluate)

    r50 = torchvision.models.resnet50().eval()
    r50_run = best(r50)
    x50 = torch.rand(8, 3, 224, 224).to(memory_format=fmt)
    with torch.no_grad():
        out["r50_infer_224_b8_img_s"] = 8 / timed(args.repeats, lambda: r50_run(x50))
    scores = torch.cat([m.weight.detach().abs().flatten() for m in r50.modules() if isinstance(m, nn.Conv2d)])
    k = round(0.2 * scores.numel())
    out["r50_global_threshold_ms"] = 1e3 * timed(max(args.repeats, 3), lambda: torch.kthvalue(scores, k))
    out["r50_conv_weights"] = scores.numel()
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
