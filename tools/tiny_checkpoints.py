"""Writes tiny PyTorch checkpoints, byte-compatible with `torch.save`, without PyTorch.

The fuzz target `pth` (fuzz/, tools/fuzz.sh) needs small seeds: the golden checkpoints of
`golden.py` are 200-630 KB, so almost every mutation lands in tensor data and never reaches the
pickle parser. These files hold a state dict of three small float tensors (`conv1.weight`
[2, 1, 3, 3], `bn1.running_mean` [2], `fc.weight` [3, 2]) in the two layouts torch writes:

* `tiny_zip.pth`: the zip container of `torch.save` (PyTorch >= 1.6): `archive/data.pkl`,
  one `archive/data/<key>` per storage, `archive/version`, `archive/byteorder`;
* `tiny_legacy.pth`: `torch.save(..., _use_new_zipfile_serialization=False)`: the magic
  number, protocol and system-info pickles, the object pickle, the storage keys, then each
  storage's element count and bytes.

Both pickles are written by Python's own pickler with PyTorch's persistent ids and
`torch._utils._rebuild_tensor_v2` reductions, exactly as torch's pickler emits them; the module
names are registered as stand-ins so that no PyTorch import is needed. Deterministic: reruns
give the same bytes. Usage: python3 tools/tiny_checkpoints.py OUT_DIR
"""

import collections
import io
import pickle
import struct
import sys
import types
import zipfile

# Stand-ins for the names torch's pickles refer to.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")


class FloatStorage:
    pass


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


FloatStorage.__module__ = "torch"
_rebuild_tensor_v2.__module__ = "torch._utils"
torch.FloatStorage = FloatStorage
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


class Storage:
    def __init__(self, key, values):
        self.key = key
        self.values = values


class Tensor:
    def __init__(self, storage, shape):
        self.storage = storage
        self.shape = shape

    def __reduce__(self):
        stride = []
        acc = 1
        for d in reversed(self.shape):
            stride.insert(0, acc)
            acc *= d
        return (
            _rebuild_tensor_v2,
            (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()),
        )


def state_dict():
    tensors = collections.OrderedDict()
    shapes = [("conv1.weight", [2, 1, 3, 3]), ("bn1.running_mean", [2]), ("fc.weight", [3, 2])]
    for k, (name, shape) in enumerate(shapes):
        n = 1
        for d in shape:
            n *= d
        values = [((i * 7 + k) % 11 - 5) / 8.0 for i in range(n)]
        tensors[name] = Tensor(Storage(str(k), values), shape)
    return tensors


class ZipPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", len(obj.values))
        return None


class LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", len(obj.values), None)
        return None


def floats(values):
    return struct.pack("<%df" % len(values), *values)


def write_zip(path):
    sd = state_dict()
    buf = io.BytesIO()
    ZipPickler(buf, protocol=2).dump(sd)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        def add(name, data):
            info = zipfile.ZipInfo("archive/" + name, date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(info, data)

        add("data.pkl", buf.getvalue())
        add("byteorder", b"little")
        for t in sd.values():
            add("data/" + t.storage.key, floats(t.storage.values))
        add("version", b"3\n")


def write_legacy(path):
    sd = state_dict()
    out = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    pickle.dump(sys_info, out, protocol=2)
    LegacyPickler(out, protocol=2).dump(sd)
    keys = [t.storage.key for t in sd.values()]
    pickle.dump(keys, out, protocol=2)
    for t in sd.values():
        out.write(struct.pack("<q", len(t.storage.values)))
        out.write(floats(t.storage.values))
    with open(path, "wb") as f:
        f.write(out.getvalue())


if __name__ == "__main__":
    import os

    out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out_dir, exist_ok=True)
    write_zip(os.path.join(out_dir, "tiny_zip.pth"))
    write_legacy(os.path.join(out_dir, "tiny_legacy.pth"))
