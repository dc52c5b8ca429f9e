#!/usr/bin/env python3
"""Generate the PyTorch golden fixtures used by the dwlth-prune tests.

What it writes (default: ``crates/dwlth-prune/tests/golden/``), for the
golden cases ``r18_imagenet_w4`` and ``r50_imagenet_w4`` of ``golden.py``
(same seeds; the weights are rebuilt with ``golden.build_case`` and asserted
equal to the committed ``crates/dwlth-models/tests/golden/<case>.safetensors``):

* ``<case>_prune.safetensors`` with, for every *prunable* tensor (the
  ``weight`` of every ``nn.Conv2d``: the stem ``conv1``, every block conv and
  every ``downsample.0``; never ``fc``, never BatchNorm), keyed by its
  torchvision ``state_dict`` name ``<conv key>`` (e.g.
  ``layer1.0.conv1.weight``):

  - ``omp_global_l1.<s>.kept.<conv key>`` int64 [1] for s in 0.2, 0.5, 0.9,
    0.98: ``mask.sum()`` after
    ``prune.global_unstructured(params, pruning_method=prune.L1Unstructured,
    amount=s)`` over all convs at once (``params`` in ``named_modules``
    order; each sparsity starts from the unpruned weights);
  - ``omp_global_l1.<s>.mask.<conv key>`` uint8, the weight's shape, for
    s = 0.2 and 0.9 (1 = kept);
  - ``omp_layer_l1.0.5.kept.<conv key>`` int64 [1]:
    ``prune.l1_unstructured(conv, 'weight', amount=0.5)`` on each conv alone;
  - ``channel_l1.0.3.mask.<conv key>``, ``kernel_l1.0.3.mask.<conv key>``,
    ``row_l1.0.3.mask.<conv key>``: uint8 masks of the weight's shape, the
    three structured granularities below, each conv pruned on its own
    (layer-wise) with amount 0.3.

  Metadata (strings): ``case``, ``arch``, ``width``, ``stem``, ``seed``,
  ``torch_version``, ``conv_keys`` (comma-separated, in order),
  ``conv_weights_total`` and ``omp_global_l1.<s>.total_kept`` for each s,
  and ``min_rel_gap.<granularity>`` (see "Ties" below).
* ``manifest.json``: every file with its size, sha256 and a description
  (entries for other files already listed there are kept).

Scores and selection (W = a conv weight [out, in, kh, kw], float32):

* unstructured (global and layer-wise): score = |W| per element. Global
  concatenates the flattened |W| of all convs. The ``n`` smallest scores are
  pruned (``torch.topk(..., largest=False)``), the rest kept.
* channel (``prune.ln_structured(conv, 'weight', amount=0.3, n=1, dim=0)``):
  score[o] = sum over (i, y, x) of |W[o,i,y,x]| (L1 norm of each output
  channel); the ``out - n`` channels with the largest scores are kept, the
  ``n`` others pruned whole.
* kernel (computed here; torch.nn.utils.prune has no such method):
  score[o,i] = sum over (y, x) of |W[o,i,y,x]| (L1 norm of one k x k kernel,
  i.e. one (out, in) pair); the ``n`` smallest of the out*in kernels are
  pruned whole.
* row (computed here): score[o,i,y] = sum over x of |W[o,i,y,x]| (L1 norm of
  one kernel row, along the last dim); the ``n`` smallest of the out*in*kh
  rows are pruned whole.  For 1x1 convs a row is a kernel is one element.

Number pruned: PyTorch's ``_compute_nparams_toprune`` returns
``round(amount * n)`` where ``amount * n`` is a Python (f64) product and
``round`` is Python's round-half-to-EVEN (``round(2.5) == 2``,
``round(0.5 * 7) == 4``, ``0.3 * 5 == 1.5`` in f64 so ``round(0.3 * 5) == 2``).
``n`` is the element count (unstructured; the total over all convs for
global), the number of output channels (channel), out*in (kernel) or
out*in*kh (row). The same rule is used for kernel and row here. Rust must use
``(amount as f64 * n as f64).round_ties_even()`` -- not ``f64::round``,
which rounds halves away from zero. (None of the counts in these two fixtures
falls on a half, so the rule is exercised by the probes in
``assert_round_rule`` -- ``0.3 * 5`` channels -> 2, ``0.5 * 5`` weights -> 2
-- which the Rust side should unit-test the same way.)

Ties: the script asserts that in every selection the largest pruned score is
strictly below the smallest kept score, so the result does not depend on how
``topk`` breaks ties. For the structured scores (sums of floats) it also
asserts that the same masks come out of float64 scores, and records in
``min_rel_gap.<granularity>`` the smallest relative gap (kept - pruned) /
kept at the threshold over all layers, which tells how much float32
summation-order error a reimplementation can afford.

Rerun from the repository root (after ``tools/golden.py``'s setup)::

    tools/.venv/bin/python tools/golden_prune.py            # or: --out DIR

Everything is seeded and deterministic; reruns reproduce the files byte for
byte.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.utils.prune as prune
import torchvision
from safetensors.torch import load_file

from golden import CASE_BY_NAME, DEFAULT_OUT as MODELS_GOLDEN, build_case, conv_names, save_file, update_manifest

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "crates" / "dwlth-prune" / "tests" / "golden"

CASE_NAMES = ("r18_imagenet_w4", "r50_imagenet_w4")
GLOBAL_SPARSITIES = (0.2, 0.5, 0.9, 0.98)
GLOBAL_MASK_SPARSITIES = (0.2, 0.9)
LAYER_SPARSITY = 0.5
STRUCTURED_AMOUNT = 0.3
MAX_FILE_BYTES = 1536 * 1024


def n_to_prune(amount: float, n: int) -> int:
    """PyTorch's rule (round half to even on the f64 product)."""
    return round(amount * n)


def assert_round_rule() -> None:
    probe = nn.Conv2d(1, 5, kernel_size=1, bias=False)
    with torch.no_grad():
        probe.weight.copy_(torch.arange(1.0, 6.0).reshape(5, 1, 1, 1))
    # 0.3 * 5 == 1.5 exactly in f64: half to even prunes 2 channels.
    prune.ln_structured(probe, "weight", amount=0.3, n=1, dim=0)
    assert int((probe.weight_mask.flatten() == 0).sum()) == 2 == round(0.3 * 5)
    p2 = nn.Conv2d(1, 5, kernel_size=1, bias=False)
    with torch.no_grad():
        p2.weight.copy_(torch.arange(1.0, 6.0).reshape(5, 1, 1, 1))
    # 0.5 * 5 == 2.5: half to even prunes 2, not 3.
    prune.l1_unstructured(p2, "weight", amount=0.5)
    assert int(p2.weight_mask.sum()) == 3


def fresh_net(case: dict) -> nn.Module:
    net, _, _ = build_case(case)
    return net


def check_weights(case: dict, net: nn.Module) -> None:
    stored = load_file(str(MODELS_GOLDEN / f"{case['name']}.safetensors"))
    for k, v in net.state_dict().items():
        assert torch.equal(stored[k], v), f"{case['name']}: {k} differs from the stored fixture"


def select_smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean keep-mask over flat ``scores``: False for the k smallest.
    Asserts a strict gap at the threshold (no tie across the boundary)."""
    flat = scores.reshape(-1)
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if k > 0:
        keep[torch.topk(flat, k=k, largest=False).indices] = False
    if 0 < k < flat.numel():
        assert flat[~keep].max() < flat[keep].min(), "tie at the pruning threshold"
    return keep.reshape(scores.shape)


def rel_gap(scores: torch.Tensor, keep: torch.Tensor) -> float:
    if keep.all() or not keep.any():
        return float("inf")
    lo, hi = scores[~keep].max().item(), scores[keep].min().item()
    return (hi - lo) / hi


def structured_masks(w: torch.Tensor, amount: float):
    """kernel and row masks (uint8, w's shape) and relative gaps, from float32
    scores, checked against float64 scores."""
    out = {}
    absw = w.detach().abs()
    for gran, dims in (("kernel", (2, 3)), ("row", (3,))):
        s32 = absw.sum(dim=dims)
        s64 = absw.double().sum(dim=dims)
        k = n_to_prune(amount, s32.numel())
        keep = select_smallest(s32, k)
        assert torch.equal(keep, select_smallest(s64, k)), f"{gran}: float32/float64 masks differ"
        mask = keep.reshape(*s32.shape, *([1] * len(dims))).expand_as(w)
        assert int((~keep).sum()) == k
        out[gran] = (mask.to(torch.uint8).contiguous(), rel_gap(s64, keep))
    return out


def write_case(name: str, out: Path, files: dict) -> None:
    case = CASE_BY_NAME[name]
    net = fresh_net(case)
    check_weights(case, net)
    convs = conv_names(net)
    keys = [f"{c}.weight" for c in convs]
    sizes = {c: net.get_submodule(c).weight.numel() for c in convs}
    total = sum(sizes.values())
    tensors: dict[str, torch.Tensor] = {}
    meta = {"case": name, "arch": case["arch"], "width": str(case["width"]), "stem": case["stem"],
            "seed": str(case["seed"]), "torch_version": torch.__version__,
            "conv_keys": ",".join(keys), "conv_weights_total": str(total)}

    # global unstructured L1 (one-shot magnitude pruning over all convs)
    for s in GLOBAL_SPARSITIES:
        m = fresh_net(case)
        params = tuple((m.get_submodule(c), "weight") for c in convs)
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=s)
        all_abs = torch.cat([m.get_submodule(c).weight_orig.detach().abs().flatten() for c in convs])
        k = n_to_prune(s, total)
        expect = select_smallest(all_abs, k)  # tie check + independent mask
        got = torch.cat([m.get_submodule(c).weight_mask.flatten() for c in convs])
        assert torch.equal(got.bool(), expect), f"global {s}: mask differs from own selection"
        kept_total = 0
        for c in convs:
            mask = m.get_submodule(c).weight_mask
            kept = int(mask.sum().item())
            kept_total += kept
            tensors[f"omp_global_l1.{s}.kept.{c}.weight"] = torch.tensor([kept], dtype=torch.int64)
            if s in GLOBAL_MASK_SPARSITIES:
                tensors[f"omp_global_l1.{s}.mask.{c}.weight"] = mask.to(torch.uint8).contiguous()
        assert kept_total == total - k, (s, kept_total, total, k)
        meta[f"omp_global_l1.{s}.total_kept"] = str(kept_total)
        print(f"  {name}: global L1 {s}: kept {kept_total}/{total}")

    # cross-check with the Double-Win-LTH fixture of golden.py (same r18 ticket)
    if name == "r18_imagenet_w4":
        dw = load_file(str(MODELS_GOLDEN / "r18_w4_double_win_golden.safetensors"))
        for c in convs:
            assert torch.equal(dw[f"kept.{c}"], tensors[f"omp_global_l1.0.2.kept.{c}.weight"]), c

    # layer-wise unstructured L1
    m = fresh_net(case)
    for c in convs:
        mod = m.get_submodule(c)
        prune.l1_unstructured(mod, "weight", amount=LAYER_SPARSITY)
        kept = int(mod.weight_mask.sum().item())
        k = n_to_prune(LAYER_SPARSITY, sizes[c])
        assert kept == sizes[c] - k
        assert torch.equal(mod.weight_mask.bool(), select_smallest(mod.weight_orig.detach().abs(), k))
        tensors[f"omp_layer_l1.{LAYER_SPARSITY}.kept.{c}.weight"] = torch.tensor([kept], dtype=torch.int64)

    # structured, layer-wise
    a = STRUCTURED_AMOUNT
    gaps = {"channel": float("inf"), "kernel": float("inf"), "row": float("inf")}
    m = fresh_net(case)
    for c in convs:
        mod = m.get_submodule(c)
        w = mod.weight.detach().clone()
        prune.ln_structured(mod, "weight", amount=a, n=1, dim=0)
        cmask = mod.weight_mask
        # own channel selection from float64 scores must agree
        s64 = w.double().abs().sum(dim=(1, 2, 3))
        k = n_to_prune(a, w.shape[0])
        keep = select_smallest(s64, k)
        assert torch.equal(cmask.bool(), keep[:, None, None, None].expand_as(w)), f"channel {c}"
        gaps["channel"] = min(gaps["channel"], rel_gap(s64, keep))
        tensors[f"channel_l1.{a}.mask.{c}.weight"] = cmask.to(torch.uint8).contiguous()
        for gran, (mask, gap) in structured_masks(w, a).items():
            tensors[f"{gran}_l1.{a}.mask.{c}.weight"] = mask
            gaps[gran] = min(gaps[gran], gap)
    for g, v in gaps.items():
        meta[f"min_rel_gap.{g}"] = f"{v:.3e}"
    print(f"  {name}: structured {a}: smallest relative score gap at the threshold "
          + ", ".join(f"{g} {v:.2e}" for g, v in gaps.items()))

    path = out / f"{name}_prune.safetensors"
    save_file(tensors, str(path), metadata=meta)
    size = path.stat().st_size
    assert size < MAX_FILE_BYTES, f"{path.name} is {size} bytes"
    files[path.name] = (
        f"{case['arch']} width {case['width']} ({name}) pruning references: kept counts per conv for "
        f"global L1 unstructured {', '.join(map(str, GLOBAL_SPARSITIES))} (masks for "
        f"{', '.join(map(str, GLOBAL_MASK_SPARSITIES))}), layer-wise L1 0.5 kept counts, "
        f"channel/kernel/row L1 0.3 masks"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output dir (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}")
    assert_round_rule()
    files: dict[str, str] = {}
    for name in CASE_NAMES:
        write_case(name, out, files)
    for f in update_manifest(out, files, "tools/golden_prune.py"):
        if f["name"] in files:
            print(f"  {f['bytes']:>9}  {f['name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
