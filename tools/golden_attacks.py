#!/usr/bin/env python3
"""Generate the PyTorch golden fixtures used by the dwlth-adv tests.

Model: golden case ``r18_cifar_w4`` (resnet18, width 4, CIFAR stem, 10
classes), weights and ``normalize.mean`` / ``normalize.std`` (ImageNet
statistics) loaded from ``crates/dwlth-models/tests/golden/r18_cifar_w4.safetensors``
(and asserted equal to ``golden.build_case``'s), as
``logits = resnet((x - mean[None,:,None,None]) / std[None,:,None,None])``,
in ``eval()`` mode throughout (BatchNorm uses the running statistics, no
statistics are updated).  All tensors float32; ``x`` is in [0,1] pixel space.

Batch: ``x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(2024))``.
``pred = argmax(model(x))``; ``labels[:12] = pred[:12]`` and
``labels[12:] = (pred[12:] + 1) % 10`` (deliberately wrong), so the clean
accuracy is exactly 12/16.  ``targets = (labels + 1) % 10``.
Loss: ``nn.CrossEntropyLoss()`` (mean over the batch); ``grad`` is
d loss / d x_adv (so it carries the 1/16 of the mean).

eps and alpha are Python floats that PyTorch casts to float32 in each
float32 op, i.e. ``eps = (8/255) as f32``, ``alpha = (2/255) as f32`` for
l-inf; every step below is elementwise float32 arithmetic.

* FGSM, eps = 8/255:
  ``x_fgsm = clamp(x + eps * sign(grad(x)), 0, 1)``.
* PGD l-inf, eps = 8/255, alpha = 2/255, NO random start (x_0 = x), 10
  (``x_pgd10``) or 20 (``x_pgd20``) steps of::

      x_adv = x_adv + alpha * sign(grad(x_adv))
      x_adv = min(max(x_adv, x - eps), x + eps)
      x_adv = clamp(x_adv, 0, 1)

  (the first 10 steps of PGD-20 are PGD-10: asserted).
* PGD l2, eps = 0.5, alpha = 0.1, no random start, 10 steps
  (``x_pgd10_l2``); norms are per example over all 3*32*32 values::

      g      = grad(x_adv)
      x_adv  = x_adv + alpha * g / max(||g||_2, 1e-12)
      delta  = x_adv - x
      delta  = delta * min(1, eps / max(||delta||_2, 1e-12))
      x_adv  = clamp(x + delta, 0, 1)

* targeted PGD l-inf, eps = 8/255, alpha = 2/255, no random start, 10 steps
  (``x_pgd10_targeted``): as PGD l-inf but with the loss
  ``CE(model(x_adv), targets)`` and a descent step
  ``x_adv = x_adv - alpha * sign(grad)``, same projection and clamp.

``sign(0) = 0`` (torch.sign): a zero gradient component leaves the pixel
unchanged.

Tensors written to ``crates/dwlth-adv/tests/golden/r18_cifar_w4_attacks.safetensors``:
``input`` [16,3,32,32], ``labels`` / ``targets`` int64 [16]; ``x_fgsm``,
``x_pgd10``, ``x_pgd20``, ``x_pgd10_l2``, ``x_pgd10_targeted``
[16,3,32,32]; ``logits_clean``, ``logits_fgsm``, ``logits_pgd10``,
``logits_pgd20``, ``logits_pgd10_l2``, ``logits_pgd10_targeted`` [16,10]
(eval model on each batch); ``acc_clean``, ``acc_fgsm``, ``acc_pgd10``,
``acc_pgd20``, ``acc_pgd10_l2`` float32 [1] (fraction of
``argmax(logits) == labels``) and ``target_hit_pgd10_targeted`` float32 [1]
(fraction of ``argmax(logits) == targets``); ``fgsm_grad`` [16,3,32,32],
the gradient FGSM takes the sign of; ``fgsm_grad_zero_count`` int64 [1],
the number of its components with ``|g| <= 1e-12`` (exact zeros included):
sign ties where a reimplementation may legitimately pick another sign, so a
test may allow that many differing pixels in ``x_fgsm``.
Metadata (strings): case, arch, seed (of the weights), input_seed,
torch_version, the attack parameters, the accuracies, and
``min_abs_grad.<attack>`` (the smallest |grad| component met over all steps
of that attack, relative to the largest |grad| of the same step) to gauge
how close the signs came to flipping, and ``fgsm_grad_small.<r>`` for r in
1e-6, 1e-5, 1e-4: how many FGSM gradient components have
``|g| < r * max|g|`` (max over the same image) -- the pixels whose sign a
reimplementation with relative gradient error r could get wrong.

``manifest.json`` lists every file with its size, sha256 and a description
(entries for other files already listed there are kept).

Rerun from the repository root (after ``tools/golden.py``'s setup)::

    tools/.venv/bin/python tools/golden_attacks.py            # or: --out DIR

Seeded, float32, ``torch.use_deterministic_algorithms(True)``; reruns
reproduce the file byte for byte.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torchvision
from safetensors.torch import load_file

from golden import CASE_BY_NAME, DEFAULT_OUT as MODELS_GOLDEN, Normalized, ResNet, build_case, save_file, update_manifest

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "crates" / "dwlth-adv" / "tests" / "golden"

CASE = "r18_cifar_w4"
INPUT_SEED = 2024
BATCH = 16
N_WRONG = 4
LINF_EPS = 8 / 255
LINF_ALPHA = 2 / 255
L2_EPS = 0.5
L2_ALPHA = 0.1
NORM_FLOOR = 1e-12
ZERO_TOL = 1e-12
MAX_FILE_BYTES = 2 * 1024 * 1024


def load_model() -> nn.Module:
    case = CASE_BY_NAME[CASE]
    stored = load_file(str(MODELS_GOLDEN / f"{CASE}.safetensors"))
    net = ResNet(case["arch"], case["width"], case["stem"], case["in_channels"], case["num_classes"])
    sd = {k: stored[k] for k in net.state_dict()}
    net.load_state_dict(sd, strict=True)
    ref, _, _ = build_case(case)
    for k, v in ref.state_dict().items():
        assert torch.equal(sd[k], v), f"stored {k} differs from golden.build_case"
    model = Normalized(net, (0.0,) * 3, (1.0,) * 3)
    model.mean.copy_(stored["normalize.mean"])
    model.std.copy_(stored["normalize.std"])
    assert torch.equal(model.mean, torch.tensor(case["mean"], dtype=torch.float32))
    assert torch.equal(model.std, torch.tensor(case["std"], dtype=torch.float32))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class GradFn:
    """d CE(model(x), y) / d x, tracking the smallest relative |grad|."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.loss = nn.CrossEntropyLoss()
        self.min_rel = float("inf")

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xg = x.detach().clone().requires_grad_(True)
        loss = self.loss(self.model(xg), y)
        (g,) = torch.autograd.grad(loss, xg)
        a = g.abs().flatten(1)
        self.min_rel = min(self.min_rel, (a.min(dim=1).values / a.max(dim=1).values).min().item())
        return g.detach()


def fgsm(grad: GradFn, x, y, eps):
    g = grad(x, y)
    return torch.clamp(x + eps * torch.sign(g), 0, 1), g


def pgd_linf(grad: GradFn, x, y, eps, alpha, steps, targeted=False, trace=None):
    x_adv = x.clone()
    for t in range(steps):
        g = grad(x_adv, y)
        if targeted:
            x_adv = x_adv - alpha * torch.sign(g)
        else:
            x_adv = x_adv + alpha * torch.sign(g)
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0, 1)
        if trace is not None:
            trace.append(x_adv.clone())
    return x_adv


def pgd_l2(grad: GradFn, x, y, eps, alpha, steps):
    x_adv = x.clone()
    for _ in range(steps):
        g = grad(x_adv, y)
        gnorm = g.flatten(1).norm(p=2, dim=1).clamp_min(NORM_FLOOR)
        x_adv = x_adv + alpha * g / gnorm[:, None, None, None]
        delta = x_adv - x
        dnorm = delta.flatten(1).norm(p=2, dim=1).clamp_min(NORM_FLOOR)
        factor = torch.clamp(eps / dnorm, max=1.0)
        delta = delta * factor[:, None, None, None]
        x_adv = torch.clamp(x + delta, 0, 1)
    return x_adv


def unique_argmax(logits: torch.Tensor) -> torch.Tensor:
    top2 = logits.topk(2, dim=1).values
    assert (top2[:, 0] > top2[:, 1]).all(), "argmax tie"
    return logits.argmax(dim=1)


def write(out: Path, files: dict) -> None:
    model = load_model()
    x = torch.rand(BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(INPUT_SEED))
    with torch.no_grad():
        logits_clean = model(x)
    pred = unique_argmax(logits_clean)
    labels = pred.clone()
    labels[BATCH - N_WRONG:] = (pred[BATCH - N_WRONG:] + 1) % 10
    targets = (labels + 1) % 10
    print(f"  clean predictions {pred.tolist()}")
    print(f"  labels            {labels.tolist()}")

    t = {"input": x.clone(), "labels": labels, "targets": targets}
    meta = {"case": CASE, "arch": "resnet18", "width": "4", "stem": "cifar",
            "seed": str(CASE_BY_NAME[CASE]["seed"]), "input_seed": str(INPUT_SEED),
            "torch_version": torch.__version__, "linf_eps": "8/255", "linf_alpha": "2/255",
            "l2_eps": str(L2_EPS), "l2_alpha": str(L2_ALPHA), "norm_floor": str(NORM_FLOOR),
            "loss": "CrossEntropyLoss(reduction='mean')", "random_start": "false",
            "labels": "argmax(logits_clean) for images 0..11, (argmax+1)%10 for 12..15",
            "targets": "(labels+1)%10"}

    gf = GradFn(model)
    x_fgsm, g = fgsm(gf, x, labels, LINF_EPS)
    meta["min_abs_grad.fgsm"] = f"{gf.min_rel:.3e}"
    zero = int((g.abs() <= ZERO_TOL).sum())
    rel = g.abs().flatten(1) / g.abs().flatten(1).max(dim=1, keepdim=True).values
    for th in ("1e-6", "1e-5", "1e-4"):
        meta[f"fgsm_grad_small.{th}"] = str(int((rel < float(th)).sum()))
    t["fgsm_grad"] = g.clone()
    t["fgsm_grad_zero_count"] = torch.tensor([zero], dtype=torch.int64)
    t["x_fgsm"] = x_fgsm

    gf = GradFn(model)
    trace = []
    t["x_pgd10"] = pgd_linf(gf, x, labels, LINF_EPS, LINF_ALPHA, 10, trace=trace)
    meta["min_abs_grad.pgd10"] = f"{gf.min_rel:.3e}"
    gf = GradFn(model)
    trace20 = []
    t["x_pgd20"] = pgd_linf(gf, x, labels, LINF_EPS, LINF_ALPHA, 20, trace=trace20)
    meta["min_abs_grad.pgd20"] = f"{gf.min_rel:.3e}"
    assert all(torch.equal(a, b) for a, b in zip(trace, trace20[:10])), "PGD-20 prefix != PGD-10"
    gf = GradFn(model)
    t["x_pgd10_l2"] = pgd_l2(gf, x, labels, L2_EPS, L2_ALPHA, 10)
    meta["min_abs_grad.pgd10_l2"] = f"{gf.min_rel:.3e}"
    gf = GradFn(model)
    t["x_pgd10_targeted"] = pgd_linf(gf, x, targets, LINF_EPS, LINF_ALPHA, 10, targeted=True)
    meta["min_abs_grad.pgd10_targeted"] = f"{gf.min_rel:.3e}"

    # constraints
    eps32 = torch.tensor(LINF_EPS, dtype=torch.float32)
    for k in ("x_fgsm", "x_pgd10", "x_pgd20", "x_pgd10_targeted"):
        xa = t[k]
        assert xa.dtype == torch.float32 and xa.min() >= 0 and xa.max() <= 1, k
        assert ((xa - x).abs() <= eps32 * (1 + 1e-6)).all(), k
    d2 = (t["x_pgd10_l2"] - x).flatten(1).norm(dim=1)
    assert (d2 <= L2_EPS * (1 + 1e-5)).all(), d2
    assert t["x_pgd10_l2"].min() >= 0 and t["x_pgd10_l2"].max() <= 1

    accs = {}
    with torch.no_grad():
        t["logits_clean"] = logits_clean
        for name in ("fgsm", "pgd10", "pgd20", "pgd10_l2", "pgd10_targeted"):
            t[f"logits_{name}"] = model(t[f"x_{name}"])
    for name in ("clean", "fgsm", "pgd10", "pgd20", "pgd10_l2"):
        p = unique_argmax(t[f"logits_{name}"])
        accs[f"acc_{name}"] = (p == labels).float().mean().item()
    p = unique_argmax(t["logits_pgd10_targeted"])
    accs["target_hit_pgd10_targeted"] = (p == targets).float().mean().item()
    assert accs["acc_clean"] == 12 / 16
    for k, v in accs.items():
        t[k] = torch.tensor([v], dtype=torch.float32)
        meta[k] = repr(v)
    for k, v in t.items():
        assert torch.isfinite(v.float()).all(), k
        if v.is_floating_point():
            assert v.dtype == torch.float32, k
        t[k] = v.detach().contiguous()

    print("  " + ", ".join(f"{k} {v:.4f}" for k, v in accs.items()))
    print(f"  fgsm_grad_zero_count {zero}; smallest |grad|/max|grad| per attack: "
          + ", ".join(f"{k.split('.')[1]} {v}" for k, v in meta.items() if k.startswith("min_abs_grad")))
    path = out / f"{CASE}_attacks.safetensors"
    save_file(t, str(path), metadata=meta)
    size = path.stat().st_size
    assert size < MAX_FILE_BYTES, f"{path.name} is {size} bytes"
    files[path.name] = ("r18_cifar_w4 (eval) attack references on 16 U(0,1) images: FGSM, PGD-10/20 "
                        "l-inf, PGD-10 l2, targeted PGD-10 l-inf (no random start), adversarial "
                        "inputs, logits, accuracies, FGSM gradient and its zero count")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output dir (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}")
    files: dict[str, str] = {}
    write(out, files)
    for f in update_manifest(out, files, "tools/golden_attacks.py"):
        if f["name"] in files:
            print(f"  {f['bytes']:>9}  {f['name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
