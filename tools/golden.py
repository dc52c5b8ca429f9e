#!/usr/bin/env python3
"""Generate the PyTorch golden fixtures used by the dwlth-models tests.

What it writes (default: ``crates/dwlth-models/tests/golden/``):

* ``<case>.safetensors`` for five small ResNets (see ``CASES``): every
  torchvision-named ``state_dict`` tensor (including the int64
  ``num_batches_tracked``), ``normalize.mean`` / ``normalize.std`` [C],
  ``input`` [2,C,32,32] in [0,1], ``labels`` int64 [2], ``logits_eval``,
  ``logits_train`` (one train-mode forward on a deep copy, batch statistics),
  ``after_train.<bn>.running_mean`` / ``.running_var`` for every BatchNorm
  after that forward, ``loss_eval`` [1] and ``input_grad_eval``
  (d CrossEntropy(mean) / d input, eval mode).  The metadata holds arch,
  width, stem, in_channels, num_classes, torch_version and seed.
* checkpoint-format fixtures holding the weights of case ``r18_imagenet_w4``
  as written by torchvision users, the MadryLab ``robustness`` library,
  ``fast_adversarial`` (ImageNet) and Double-Win-LTH (see the ``write_*``
  functions for the layouts and where they were checked),
* ``manifest.json``: every file with its size, sha256 and a description.

``--with-ticket`` additionally writes ``r18_w4_double_win_ticket.pth``, the
same pruned weights in the layout of a Double-Win-LTH ``main_adv.py`` ticket
checkpoint (off by default to keep the committed fixtures small).

Rerun from the repository root::

    python -m venv tools/.venv
    tools/.venv/bin/pip install -r tools/requirements.txt
    tools/.venv/bin/python tools/golden.py            # or: --out DIR

Everything is seeded and float32, and the script asserts that its ResNet is
torchvision's ResNet (same keys, shapes, initial values and outputs at
width 64), so rerunning it reproduces the same tensors, and the same bytes
for every file except the two legacy (non-zip) pickles: that format names
storages by their memory address, so those bytes (and sha256) change from run
to run while the tensors stay identical.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import struct
import sys
import warnings
from pathlib import Path

import dill
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune as prune
import torchvision
import safetensors.torch
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "crates" / "dwlth-models" / "tests" / "golden"

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 4 * 1024 * 1024


def save_file(tensors: dict, path: str, metadata: dict | None = None) -> None:
    """safetensors.torch.save_file with a reproducible header: safetensors
    writes the ``__metadata__`` entries in hash-map order, so they are put in
    sorted order here (same header length, same tensors and offsets)."""
    data = safetensors.torch.save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        ordered = {"__metadata__": header.pop("__metadata__")}
        ordered.update(header)
        text = json.dumps(ordered, separators=(",", ":")).encode()
        assert len(text) <= n, "header grew"
        data = data[:8] + text + b" " * (n - len(text)) + data[8 + n:]
    with open(path, "wb") as f:
        f.write(data)
    back = load_file(path)
    assert set(back) == set(tensors), "safetensors keys"
    assert all(torch.equal(back[k], v) for k, v in tensors.items()), "safetensors values"


# ---------------------------------------------------------------------------
# torchvision-exact ResNet with a width parameter
# ---------------------------------------------------------------------------


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 conv2."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


ARCHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
}


class ResNet(nn.Module):
    """torchvision.models.resnet.ResNet with ``width`` (64 = torchvision),
    ``stem`` ("imagenet": 7x7/2 conv + 3x3/2 maxpool; "cifar": 3x3/1 conv and
    ``nn.Identity`` in place of the maxpool, so state_dict keys are
    unchanged), ``in_channels`` and ``num_classes``.  Modules are created in
    torchvision's order and initialised the same way, so a given seed gives
    the same tensors as torchvision at width 64."""

    def __init__(self, arch: str, width: int = 64, stem: str = "imagenet",
                 in_channels: int = 3, num_classes: int = 1000):
        super().__init__()
        block, layers = ARCHS[arch]
        self.inplanes = width
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        elif stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            raise ValueError(stem)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        if stem == "imagenet":
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

        # torchvision's initialisation (zero_init_residual=False).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class Normalized(nn.Module):
    """logits = net((x - mean[None,:,None,None]) / std[None,:,None,None])."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.net = net

    def forward(self, x):
        return self.net((x - self.mean[None, :, None, None]) / self.std[None, :, None, None])


def randomize_batchnorm(model: nn.Module) -> None:
    """Make eval-mode BatchNorm non-trivial (called right after init, same RNG)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(7)


def bn_names(model: nn.Module):
    return [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


def conv_names(model: nn.Module):
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


# ---------------------------------------------------------------------------
# Proof that the reference is torchvision's topology
# ---------------------------------------------------------------------------


def check_against_torchvision() -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(123))
    for arch in ARCHS:
        tv_ctor = getattr(torchvision.models, arch)
        torch.manual_seed(1)
        tv = tv_ctor()  # weights=None: random init, nothing is downloaded
        torch.manual_seed(1)
        ours = ResNet(arch, width=64, stem="imagenet", in_channels=3, num_classes=1000)
        tv_sd, our_sd = tv.state_dict(), ours.state_dict()
        assert list(tv_sd.keys()) == list(our_sd.keys()), f"{arch}: key order differs"
        for k in tv_sd:
            assert tv_sd[k].shape == our_sd[k].shape, f"{arch}: shape of {k}"
            assert tv_sd[k].dtype == our_sd[k].dtype, f"{arch}: dtype of {k}"
            # Same module creation order and init => bit-identical tensors.
            assert torch.equal(tv_sd[k], our_sd[k]), f"{arch}: init of {k}"
        if arch in ("resnet18", "resnet50"):
            torch.manual_seed(2)
            randomize_batchnorm(tv)
            ours.load_state_dict(tv.state_dict(), strict=True)
            with torch.no_grad():
                for train in (False, True):
                    a, b = copy.deepcopy(tv).train(train), copy.deepcopy(ours).train(train)
                    ya, yb = a(x), b(x)
                    assert torch.equal(ya, yb), f"{arch}: outputs differ (train={train})"
                    if train:
                        for n in bn_names(a):
                            ma, mb = a.get_submodule(n), b.get_submodule(n)
                            assert torch.equal(ma.running_mean, mb.running_mean)
                            assert torch.equal(ma.running_var, mb.running_var)
        # CIFAR stem == torchvision with conv1 swapped and maxpool -> Identity
        # (what e.g. Double-Win-LTH's main_adv_eval.py does for cifar10_3).
        torch.manual_seed(3)
        tvc = tv_ctor(num_classes=10)
        tvc.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        tvc.maxpool = nn.Identity()
        oc = ResNet(arch, width=64, stem="cifar", num_classes=10)
        assert [(k, v.shape) for k, v in tvc.state_dict().items()] == \
               [(k, v.shape) for k, v in oc.state_dict().items()], f"{arch}: cifar stem keys"
        if arch == "resnet18":
            oc.load_state_dict(tvc.state_dict())
            with torch.no_grad():
                assert torch.equal(tvc.eval()(x), oc.eval()(x)), "cifar stem outputs differ"
        print(f"  {arch}: keys, shapes, init and outputs match torchvision")


def check_unbiased_running_var() -> None:
    """PyTorch updates running_var with the *unbiased* batch variance."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    y = torch.randn(2, 3, 2, 2)
    bn.train()(y)
    n = y.numel() // y.shape[1]
    var_unbiased = y.transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=True)
    expected = 0.9 * torch.ones(3) + 0.1 * var_unbiased
    assert torch.allclose(bn.running_var, expected, atol=1e-6), "running_var is not unbiased"
    var_biased = var_unbiased * (n - 1) / n
    assert not torch.allclose(bn.running_var, 0.9 + 0.1 * var_biased, atol=1e-6)
    print("  BatchNorm running_var update uses the unbiased variance (n/(n-1)), momentum 0.1")


# ---------------------------------------------------------------------------
# Golden cases
# ---------------------------------------------------------------------------

CASES = [
    dict(name="r18_imagenet_w4", arch="resnet18", width=4, stem="imagenet", in_channels=3,
         num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD, seed=1804),
    dict(name="r50_imagenet_w4", arch="resnet50", width=4, stem="imagenet", in_channels=3,
         num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD, seed=5004),
    dict(name="r18_cifar_w4", arch="resnet18", width=4, stem="cifar", in_channels=3,
         num_classes=10, mean=IMAGENET_MEAN, std=IMAGENET_STD, seed=1814),
    dict(name="r34_cifar_w2", arch="resnet34", width=2, stem="cifar", in_channels=1,
         num_classes=7, mean=(0.5,), std=(0.25,), seed=3412),
    dict(name="r101_imagenet_w2", arch="resnet101", width=2, stem="imagenet", in_channels=3,
         num_classes=5, mean=IMAGENET_MEAN, std=IMAGENET_STD, seed=10102),
]
CASE_BY_NAME = {c["name"]: c for c in CASES}


def build_case(case: dict):
    """Seeded weights, input and labels of one case."""
    torch.manual_seed(case["seed"])
    net = ResNet(case["arch"], case["width"], case["stem"], case["in_channels"], case["num_classes"])
    randomize_batchnorm(net)
    # ImageNet stems get 64x64 inputs, so that layer4 still sees 2x2 positions per image: at
    # 1x1, train-mode BatchNorm normalises two values per channel and the comparison becomes
    # ill-conditioned (the result hinges on the rounding of a near-zero variance).
    size = 64 if case["stem"] == "imagenet" else 32
    x = torch.rand(2, case["in_channels"], size, size)
    labels = torch.tensor([1, 3], dtype=torch.int64) % case["num_classes"]
    return net, x, labels


def contiguous_clone(sd: dict) -> dict:
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def write_case(case: dict, out: Path, files: dict) -> None:
    net, x, labels = build_case(case)
    model = Normalized(net, case["mean"], case["std"])
    tensors = contiguous_clone(net.state_dict())
    tensors["normalize.mean"] = model.mean.clone()
    tensors["normalize.std"] = model.std.clone()
    tensors["input"] = x.clone()
    tensors["labels"] = labels.clone()

    model.eval()
    with torch.no_grad():
        tensors["logits_eval"] = model(x).clone()

    train_model = copy.deepcopy(model).train()
    with torch.no_grad():
        tensors["logits_train"] = train_model(x).clone()
    for n in bn_names(train_model.net):
        m = train_model.net.get_submodule(n)
        assert int(m.num_batches_tracked) == 8
        tensors[f"after_train.{n}.running_mean"] = m.running_mean.clone()
        tensors[f"after_train.{n}.running_var"] = m.running_var.clone()

    xg = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(xg), labels, reduction="mean")
    loss.backward()
    tensors["loss_eval"] = loss.detach().reshape(1).clone()
    tensors["input_grad_eval"] = xg.grad.detach().clone()

    for k, v in tensors.items():
        assert torch.isfinite(v.float()).all(), f"{case['name']}: non-finite {k}"
        if v.is_floating_point():
            assert v.dtype == torch.float32, k
    # The eval model must not have been touched by the train-mode copy.
    assert torch.equal(net.bn1.running_mean, tensors["bn1.running_mean"])

    meta = {
        "arch": case["arch"], "width": str(case["width"]), "stem": case["stem"],
        "in_channels": str(case["in_channels"]), "num_classes": str(case["num_classes"]),
        "torch_version": torch.__version__, "seed": str(case["seed"]),
    }
    path = out / f"{case['name']}.safetensors"
    save_file(tensors, str(path), metadata=meta)
    ev = tensors["logits_eval"]
    print(f"  {path.name}: logits_eval[0] = {[round(v, 4) for v in ev[0].tolist()]}")
    files[path.name] = (
        f"{case['arch']} width {case['width']} {case['stem']} stem, {case['in_channels']}->"
        f"{case['num_classes']}: weights, input, eval/train logits, BN stats after one "
        f"train forward, input gradient of CE loss"
    )


# ---------------------------------------------------------------------------
# Checkpoint-format fixtures (weights of r18_imagenet_w4)
# ---------------------------------------------------------------------------


def r18_reference():
    net, x, labels = build_case(CASE_BY_NAME["r18_imagenet_w4"])
    return net, x, labels


def sgd_state_after_one_step(model: nn.Module, x, labels, forward, param_groups=None):
    """SGD(momentum .9) state_dict after one real step on a *copy* of model
    (so the saved weights stay those of the golden case)."""
    m = copy.deepcopy(model).train()
    groups = param_groups(m) if param_groups else m.parameters()
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt.zero_grad()
    F.cross_entropy(forward(m, x), labels).backward()
    opt.step()
    return opt, opt.state_dict()


def assert_same_weights(sd: dict, prefix: str, ref: dict) -> None:
    for k, v in ref.items():
        assert torch.equal(sd[prefix + k], v), prefix + k


def write_torchvision(out: Path, files: dict) -> None:
    net, _, _ = r18_reference()
    sd = net.state_dict()
    p = out / "r18_w4_torchvision.pth"
    torch.save(sd, p)
    files[p.name] = "r18_imagenet_w4 weights: torch.save(state_dict) (zip format)"
    p = out / "r18_w4_torchvision_legacy.pth"
    torch.save(sd, p, _use_new_zipfile_serialization=False)
    files[p.name] = ("r18_imagenet_w4 weights: torch.save(state_dict) legacy (non-zip) format "
                     "(storage keys are memory addresses: bytes differ per run)")
    p = out / "r18_w4_torchvision.safetensors"
    save_file(contiguous_clone(sd), str(p))
    files[p.name] = "r18_imagenet_w4 weights: safetensors.torch.save_file(state_dict)"
    for name in ("r18_w4_torchvision.pth", "r18_w4_torchvision_legacy.pth"):
        back = torch.load(out / name, map_location="cpu", weights_only=True)
        assert list(back.keys()) == list(sd.keys())
        assert_same_weights(back, "", sd)
    assert_same_weights(load_file(str(out / "r18_w4_torchvision.safetensors")), "", sd)


# MadryLab/robustness layout, checked against the library source
# (github.com/MadryLab/robustness, master a954124):
#   robustness/tools/helpers.py  InputNormalize: buffers new_mean/new_std,
#                                registered as mean[..., None, None] -> [C,1,1]
#   robustness/attacker.py       AttackerModel.__init__: self.normalizer,
#                                self.model, self.attacker = Attacker(model,..)
#                                Attacker.__init__: self.normalize, self.model
#   robustness/train.py          train_model wraps in ch.nn.DataParallel
#                                ("module." prefix) and saves
#                                sd_info = {'model', 'optimizer', 'schedule',
#                                'epoch', 'amp': None unless mixed precision}
#                                plus sd_info['<adv|nat>_prec1'] (a 0-d tensor)
#                                with ch.save(sd_info, path, pickle_module=dill)
#   robustness/model_utils.py    loading accepts 'model' or, for checkpoints of
#                                older versions, 'state_dict'; strips 'module.'
# The classifier and attacker.model are the same module, so the file stores
# their tensors once (shared storages) under both key prefixes.


class InputNormalize(nn.Module):
    def __init__(self, new_mean, new_std):
        super().__init__()
        self.register_buffer("new_mean", new_mean[..., None, None])
        self.register_buffer("new_std", new_std[..., None, None])

    def forward(self, x):
        return (x - self.new_mean) / self.new_std


class Attacker(nn.Module):
    def __init__(self, model, mean, std):
        super().__init__()
        self.normalize = InputNormalize(mean, std)
        self.model = model


class AttackerModel(nn.Module):
    def __init__(self, model, mean, std):
        super().__init__()
        self.normalizer = InputNormalize(mean, std)
        self.model = model
        self.attacker = Attacker(model, mean, std)

    def forward(self, x):
        return self.model(self.normalizer(x))


def robustness_object(top_key: str):
    net, x, labels = r18_reference()
    ref = copy.deepcopy(net.state_dict())
    mean, std = torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)
    dp = nn.DataParallel(AttackerModel(net, mean, std))
    opt, opt_sd = sgd_state_after_one_step(dp, x, labels, lambda m, inp: m(inp))
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.1)
    with warnings.catch_warnings():
        # the optimizer stepped before the scheduler wrapped it
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(5):
            schedule.step()
    sd = dp.state_dict()
    assert_same_weights(sd, "module.model.", ref)
    assert_same_weights(sd, "module.attacker.model.", ref)
    assert sd["module.normalizer.new_mean"].shape == (3, 1, 1)
    assert sd["module.attacker.normalize.new_std"].shape == (3, 1, 1)
    obj = {
        top_key: sd,
        "optimizer": opt_sd,
        "schedule": schedule.state_dict(),
        "epoch": 5,
        "amp": None,
        "nat_prec1": torch.tensor(50.0),
    }
    return obj, ref


def write_robustness(out: Path, files: dict) -> None:
    obj, ref = robustness_object("model")
    p = out / "r18_w4_robustness.pt"
    torch.save(obj, p, pickle_module=dill)
    files[p.name] = ("r18_imagenet_w4 in MadryLab robustness layout (DataParallel(AttackerModel)), "
                     "top key 'model', CIFAR-10 normaliser, dill pickle, zip")
    obj, _ = robustness_object("state_dict")
    p = out / "r18_w4_robustness_legacy.pt"
    torch.save(obj, p, pickle_module=dill, _use_new_zipfile_serialization=False)
    files[p.name] = ("r18_imagenet_w4 in robustness layout, older top key 'state_dict', dill "
                     "pickle, legacy (non-zip) format (bytes differ per run)")
    for name, key in (("r18_w4_robustness.pt", "model"), ("r18_w4_robustness_legacy.pt", "state_dict")):
        back = torch.load(out / name, map_location="cpu", pickle_module=dill, weights_only=False)
        assert set(back) == {key, "optimizer", "schedule", "epoch", "amp", "nat_prec1"}
        assert_same_weights(back[key], "module.model.", ref)
        assert_same_weights(back[key], "module.attacker.model.", ref)
        assert torch.allclose(back[key]["module.normalizer.new_mean"].flatten(), torch.tensor(CIFAR10_MEAN))
        assert len(back["optimizer"]["state"]) == len(list(ResNet("resnet18", 4).parameters()))


# locuslab/fast_adversarial, ImageNet/main_fast.py: torchvision model wrapped
# in torch.nn.DataParallel, SGD with two param groups (BatchNorm params
# without weight decay), saved via torch.save({'epoch', 'arch', 'state_dict':
# model.state_dict(), 'best_prec1', 'optimizer'}); normalisation is done in
# the training loop, so the file holds no normaliser.


def write_fast_adversarial(out: Path, files: dict) -> None:
    net, x, labels = r18_reference()
    ref = copy.deepcopy(net.state_dict())
    dp = nn.DataParallel(net)

    def groups(m):
        decay, no_decay = [], []
        for mod in m.modules():
            for prm in mod.parameters(recurse=False):
                (no_decay if isinstance(mod, nn.BatchNorm2d) else decay).append(prm)
        return [dict(params=decay), dict(params=no_decay, weight_decay=0)]

    # No step is taken here (the robustness fixtures already carry momentum
    # buffers), which keeps the file small: 'state' is empty, the two
    # param_groups list the parameter indices.
    opt_sd = torch.optim.SGD(groups(dp), lr=0.1, momentum=0.9, weight_decay=1e-4).state_dict()
    obj = {"epoch": 10, "arch": "resnet18", "state_dict": dp.state_dict(), "best_prec1": 0.5,
           "optimizer": opt_sd}
    assert_same_weights(obj["state_dict"], "module.", ref)
    p = out / "r18_w4_fast_adversarial.pth"
    torch.save(obj, p)
    files[p.name] = ("r18_imagenet_w4 in fast_adversarial ImageNet layout: {'epoch','arch',"
                     "'state_dict' ('module.' keys),'best_prec1','optimizer'}, no normaliser")
    back = torch.load(p, map_location="cpu", weights_only=True)
    assert_same_weights(back["state_dict"], "module.", ref)


# VITA-Group/Double-Win-LTH (commit 51a43e5):
#   utils_pruning.py  pruning_model(): prune.global_unstructured over
#                     (m, 'weight') of every nn.Conv2d (stem and downsample
#                     convs included, fc excluded), L1Unstructured; pruned
#                     convs store 'weight_orig' + 'weight_mask' (float).
#                     prune_model_custom(): CustomFromMask from
#                     mask_dict[name + '.weight_mask'].
#   main_adv_eval.py  (downstream transfer): torchvision model, new fc,
#   main_std_eval.py  masks applied, then
#                     model = nn.Sequential(normalize_layer, model) with
#                     normalize_layer = advertorch.utils.NormalizeByChannelMeanStd
#                     (buffers "mean" and "std", 1-D [C]); checkpoints hold
#                     model.state_dict() => keys "0.mean", "0.std",
#                     "1.conv1.weight_orig", "1.conv1.weight_mask", ...
#                     (torch.save({'best_sa','best_ra','result','epoch',
#                     'state_dict','optimizer','scheduler'}) or, with
#                     --save_all, the bare state_dict).
#   main_adv.py / resnet.py (ImageNet pre-training = the ticket files): the
#                     repo's own ResNet has self.normalize =
#                     NormalizeByChannelMeanStd(ImageNet stats) inside the
#                     network, so tickets have keys "normalize.mean",
#                     "normalize.std" and unprefixed conv weight_orig/
#                     weight_mask, saved as {'epoch','arch','state_dict',
#                     'best_acc1','optimizer','state_prune','init'}.


class NormalizeByChannelMeanStd(nn.Module):
    """advertorch.utils.NormalizeByChannelMeanStd (buffers mean, std of shape [C])."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x):
        return x.sub(self.mean[None, :, None, None]).div(self.std[None, :, None, None])


def pruned_r18():
    net, x, labels = r18_reference()
    params = tuple((m, "weight") for m in net.modules() if isinstance(m, nn.Conv2d))
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.2)
    return net, x, labels


def write_double_win(out: Path, files: dict, with_ticket: bool) -> None:
    net, x, labels = pruned_r18()
    ref, _, _ = r18_reference()
    ref_sd = ref.state_dict()
    model = nn.Sequential(NormalizeByChannelMeanStd(CIFAR10_MEAN, CIFAR10_STD), net)
    sd = model.state_dict()
    convs = conv_names(net)
    assert len(convs) == 20
    for c in convs:
        assert f"1.{c}.weight" not in sd
        assert torch.equal(sd[f"1.{c}.weight_orig"], ref_sd[f"{c}.weight"])
        assert sd[f"1.{c}.weight_mask"].dtype == torch.float32
    assert "1.fc.weight" in sd and "1.fc.weight_mask" not in sd
    assert set(k for k in sd if not k.startswith("1.")) == {"0.mean", "0.std"}

    p = out / "r18_w4_double_win.pth"
    torch.save(sd, p)
    files[p.name] = ("r18_imagenet_w4 pruned 20% (global L1 over all convs) in Double-Win-LTH "
                     "downstream layout: state_dict of nn.Sequential(NormalizeByChannelMeanStd, net)"
                     " -> '0.mean','0.std','1.<conv>.weight_orig/weight_mask', '1.<other>'")
    p = out / "r18_w4_double_win.safetensors"
    save_file(contiguous_clone(sd), str(p))
    files[p.name] = "same tensors as r18_w4_double_win.pth, as safetensors"

    model.eval()
    with torch.no_grad():
        logits = model(x)
    golden = {"input": x.clone(), "logits_eval": logits.clone()}
    total_kept, total = 0, 0
    for c in convs:
        mask = net.get_submodule(c).weight_mask
        kept = int(mask.sum().item())
        assert torch.equal(mask, (net.get_submodule(c).weight != 0).float())
        golden[f"kept.{c}"] = torch.tensor([kept], dtype=torch.int64)
        total_kept += kept
        total += mask.numel()
    assert total_kept == total - round(0.2 * total), (total_kept, total)
    meta = {"arch": "resnet18", "width": "4", "stem": "imagenet", "in_channels": "3",
            "num_classes": "10", "torch_version": torch.__version__,
            "seed": str(CASE_BY_NAME["r18_imagenet_w4"]["seed"]), "prune_amount": "0.2",
            "conv_weights_total": str(total), "conv_weights_kept": str(total_kept)}
    p = out / "r18_w4_double_win_golden.safetensors"
    save_file(golden, str(p), metadata=meta)
    files[p.name] = ("pruned r18_imagenet_w4: input, eval logits (CIFAR-10 normalisation), "
                     "kept.<conv module> = mask sums")
    print(f"  double win: kept {total_kept}/{total} conv weights; logits_eval[0] = "
          f"{[round(v, 4) for v in logits[0].tolist()]}")

    # Reload through the repository's own path: fresh net, masks from the file
    # via CustomFromMask, then load_state_dict; logits must match.
    back = torch.load(out / "r18_w4_double_win.pth", map_location="cpu", weights_only=True)
    fresh, _, _ = r18_reference()
    masks = {k[2:]: v for k, v in back.items() if "mask" in k}
    for c in convs:
        prune.CustomFromMask.apply(fresh.get_submodule(c), "weight", mask=masks[c + ".weight_mask"])
    m2 = nn.Sequential(NormalizeByChannelMeanStd((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), fresh)
    m2.load_state_dict(back)
    with torch.no_grad():
        assert torch.equal(m2.eval()(x), logits)

    if with_ticket:
        write_double_win_ticket(out, files, net, ref_sd)


def write_double_win_ticket(out: Path, files: dict, net: nn.Module, ref_sd: dict) -> None:
    # Ticket file as written by main_adv.py (ImageNet pre-training): the
    # repo's ResNet carries its own "normalize" (ImageNet stats), keys are
    # unprefixed, wrapped in a training checkpoint with the rewind init.
    ticket_net = nn.Module()
    ticket_net.normalize = NormalizeByChannelMeanStd(IMAGENET_MEAN, IMAGENET_STD)
    for name, child in net.named_children():
        ticket_net.add_module(name, child)
    ticket = {"epoch": 10, "arch": "resnet18", "state_dict": ticket_net.state_dict(),
              "best_acc1": torch.tensor(50.0), "optimizer": {"state": {}, "param_groups": []},
              "state_prune": 1, "init": ref_sd}
    assert list(ticket["state_dict"])[:2] == ["normalize.mean", "normalize.std"]
    p = out / "r18_w4_double_win_ticket.pth"
    torch.save(ticket, p)
    files[p.name] = ("same pruned weights as a Double-Win-LTH main_adv.py ticket checkpoint: "
                     "{'epoch','arch','state_dict' ('normalize.mean/std' ImageNet stats + "
                     "unprefixed weight_orig/weight_mask),'best_acc1','optimizer'(empty),"
                     "'state_prune','init' (unpruned r18_imagenet_w4 weights)}")


# ---------------------------------------------------------------------------


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def update_manifest(out: Path, files: dict, generator: str) -> list:
    """Adds `files` (name -> description) to `out/manifest.json` with their sizes and SHA-256,
    keeping the other entries; returns the manifest's file list."""
    path = out / "manifest.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    entries = {f["name"]: f for f in old.get("files", [])}
    for name, desc in files.items():
        entries[name] = {"name": name, "bytes": (out / name).stat().st_size,
                         "sha256": sha256(out / name), "description": desc}
    manifest = {"generator": generator, "torch_version": torch.__version__,
                "torchvision_version": torchvision.__version__,
                "files": [entries[n] for n in sorted(entries)]}
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest["files"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output dir (default {DEFAULT_OUT})")
    ap.add_argument("--with-ticket", action="store_true",
                    help="also write r18_w4_double_win_ticket.pth (Double-Win-LTH main_adv.py "
                         "ticket layout, ~0.6 MB; off by default to keep the fixtures small)")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(True)

    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}")
    print("checking the reference against torchvision:")
    check_against_torchvision()
    check_unbiased_running_var()

    files: dict[str, str] = {}
    print("golden cases:")
    for case in CASES:
        write_case(case, out, files)
    print("checkpoint formats:")
    write_torchvision(out, files)
    write_robustness(out, files)
    write_fast_adversarial(out, files)
    write_double_win(out, files, args.with_ticket)

    manifest = {
        "generator": "tools/golden.py",
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "files": [],
    }
    total = 0
    for name in sorted(files):
        size = (out / name).stat().st_size
        assert size < MAX_FILE_BYTES, f"{name} is {size} bytes"
        total += size
        manifest["files"].append({"name": name, "bytes": size, "sha256": sha256(out / name),
                                  "description": files[name]})
    limit = MAX_TOTAL_BYTES + (1024 * 1024 if args.with_ticket else 0)
    assert total < limit, f"fixtures total {total} bytes"
    stale = sorted(set(os.listdir(out)) - set(files) - {"manifest.json"})
    if stale:
        print(f"warning: files in {out} not written by this script: {stale}", file=sys.stderr)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for f in manifest["files"]:
        print(f"  {f['bytes']:>9}  {f['name']}")
    print(f"  {total:>9}  total ({len(files)} files + manifest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
