#!/usr/bin/env python3
"""The inference engines a user would otherwise pick, on the very networks dwlth's bench times.

`cargo run --release --example bench -- --only sparse --export DIR` writes the input batch and
every ResNet-50 ticket it times (dense, 50-98 % global magnitude, 90 % layer-wise, half of
every layer's output channels; BatchNorm
statistics calibrated on the input) as safetensors with torchvision's names and masks, with the
logits dwlth computes. This script builds an ONNX graph of each from those weights (no PyTorch
needed), checks every engine's logits against dwlth's, and times ONNX Runtime, OpenVINO and
DeepSparse with the same number of threads, interleaved with rounds of dwlth's own bench:

    python3 -m venv tools/.venv && tools/.venv/bin/pip install -r tools/requirements-anchors.txt
    cargo build --release --example bench
    tools/.venv/bin/python tools/bench_anchors.py --bench target/release/examples/bench \
        --dir target/anchors --rounds 3 --threads 2 > anchors.json

Prints JSON: per round and ticket, images/s of every engine and of dwlth (its sparse engine,
and its dense Burn model), the engines' largest logit error relative to dwlth's, and the
medians over rounds. An engine that cannot be imported is reported as missing, not faked.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

TICKETS = [
    "r50_s0",
    "r50_s50",
    "r50_s80",
    "r50_s90",
    "r50_s95",
    "r50_s98",
    "r50_s90_layerwise",
    "r50_c50_channel",
]
# dwlth's bench keys for the same tickets (images/s of its sparse engine).
DWLTH_KEYS = {
    "r50_s0": "r50_sparse0_infer_img_s",
    "r50_s50": "r50_sparse50_infer_img_s",
    "r50_s80": "r50_sparse80_infer_img_s",
    "r50_s90": "r50_sparse90_infer_img_s",
    "r50_s95": "r50_sparse95_infer_img_s",
    "r50_s98": "r50_sparse98_infer_img_s",
    "r50_s90_layerwise": "r50_sparse90_layerwise_infer_img_s",
    "r50_c50_channel": "r50_channel50_infer_img_s",
}


def load(path):
    from safetensors.numpy import load_file

    return load_file(path)


def onnx_resnet(weights, path, input_shape):
    """A torchvision ResNet (v1.5 bottlenecks or basic blocks) as ONNX, from its state dict:
    masks applied, the in-model input normalisation included, BatchNorm in inference mode,
    the input's shape fixed (DeepSparse runs its own kernels on static shapes only)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    counter = [0]

    def name(prefix):
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(key, value):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), key))
        return key

    def weight(key):
        w = weights[key]
        mask = weights.get(key + "_mask")
        return const(key, w * mask if mask is not None else w)

    def conv(x, key, stride, pad):
        w = weights[key + ".weight"]
        out = name("conv")
        nodes.append(helper.make_node(
            "Conv", [x, weight(key + ".weight")], [out],
            kernel_shape=list(w.shape[2:]), strides=[stride, stride], pads=[pad] * 4))
        return out

    def bn(x, key, relu):
        out = name("bn")
        inputs = [x] + [const(f"{key}.{p}", weights[f"{key}.{p}"])
                        for p in ("weight", "bias", "running_mean", "running_var")]
        nodes.append(helper.make_node("BatchNormalization", inputs, [out], epsilon=1e-5))
        if relu:
            r = name("relu")
            nodes.append(helper.make_node("Relu", [out], [r]))
            return r
        return out

    x = "x"
    if "normalize.mean" in weights:
        c = weights["normalize.mean"].shape[0]
        m = const("normalize.mean", weights["normalize.mean"].reshape(1, c, 1, 1))
        s = const("normalize.std", weights["normalize.std"].reshape(1, c, 1, 1))
        centred, scaled = name("sub"), name("div")
        nodes.append(helper.make_node("Sub", [x, m], [centred]))
        nodes.append(helper.make_node("Div", [centred, s], [scaled]))
        x = scaled
    k = weights["conv1.weight"].shape[2]
    x = bn(conv(x, "conv1", 2 if k == 7 else 1, k // 2), "bn1", True)
    if k == 7:
        pooled = name("pool")
        nodes.append(helper.make_node("MaxPool", [x], [pooled], kernel_shape=[3, 3],
                                      strides=[2, 2], pads=[1, 1, 1, 1]))
        x = pooled
    for stage in range(1, 5):
        i = 0
        while f"layer{stage}.{i}.conv1.weight" in weights:
            p = f"layer{stage}.{i}"
            stride = 2 if (stage > 1 and i == 0) else 1
            bottleneck = f"{p}.conv3.weight" in weights
            if bottleneck:
                y = bn(conv(x, f"{p}.conv1", 1, 0), f"{p}.bn1", True)
                y = bn(conv(y, f"{p}.conv2", stride, 1), f"{p}.bn2", True)
                y = bn(conv(y, f"{p}.conv3", 1, 0), f"{p}.bn3", False)
            else:
                y = bn(conv(x, f"{p}.conv1", stride, 1), f"{p}.bn1", True)
                y = bn(conv(y, f"{p}.conv2", 1, 1), f"{p}.bn2", False)
            if f"{p}.downsample.0.weight" in weights:
                x = bn(conv(x, f"{p}.downsample.0", stride, 0), f"{p}.downsample.1", False)
            added, out = name("add"), name("relu")
            nodes.append(helper.make_node("Add", [y, x], [added]))
            nodes.append(helper.make_node("Relu", [added], [out]))
            x = out
            i += 1
    pooled, flat = name("gap"), name("flat")
    nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
    nodes.append(helper.make_node("Flatten", [pooled], [flat], axis=1))
    nodes.append(helper.make_node("Gemm", [flat, weight("fc.weight"), const("fc.bias", weights["fc.bias"])],
                                  ["logits"], transB=1))
    classes = weights["fc.bias"].shape[0]
    graph = helper.make_graph(
        nodes, "resnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [input_shape[0], classes])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # read by DeepSparse 1.8 as well as by the newer engines
    onnx.checker.check_model(model)
    onnx.save(model, path)


def engines(threads):
    """Name -> factory(onnx_path, batch) -> run(x) -> logits, for each importable engine."""
    found, missing = {}, {}
    try:
        import onnxruntime as ort

        def make_ort(path, batch):
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            return lambda x: s.run(["logits"], {"x": x})[0]

        found[f"onnxruntime {ort.__version__}"] = make_ort
    except Exception as e:  # reported, not hidden
        missing["onnxruntime"] = str(e)
    try:
        import openvino as ov

        core = ov.Core()

        def make_ov(path, batch):
            # f32 as every other engine (on CPUs with bf16 it would otherwise compute in bf16).
            compiled = core.compile_model(core.read_model(path), "CPU", {
                "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32"})
            out = compiled.output(0)
            return lambda x: compiled([x])[out]

        found[f"openvino {ov.__version__}"] = make_ov
    except Exception as e:
        missing["openvino"] = str(e)
    try:
        import deepsparse

        def make_ds(path, batch):
            engine = deepsparse.compile_model(path, batch_size=batch, num_cores=threads)
            return lambda x: engine.run([x])[0]

        found[f"deepsparse {deepsparse.__version__}"] = make_ds
    except Exception as e:
        missing["deepsparse"] = str(e)
    return found, missing


def timed(run, x, iters):
    run(x)
    secs = []
    for _ in range(iters):
        t = time.perf_counter()
        run(x)
        secs.append(time.perf_counter() - t)
    return x.shape[0] / statistics.median(secs)


def dwlth_round(bench, threads, repeats, export_dir):
    cmd = [bench, "--only", "sparse", "--repeats", str(repeats)]
    if export_dir:
        cmd += ["--export", export_dir]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", required=True, help="dwlth's release bench binary")
    ap.add_argument("--dir", required=True, help="where the tickets and ONNX graphs go")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5, help="timed runs per engine and round")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    found, missing = engines(args.threads)
    rounds, errors, compiled = [], {}, {}
    for r in range(args.rounds):
        row = {"dwlth": dwlth_round(args.bench, args.threads, args.iters,
                                     args.dir if r == 0 else None)}
        if r == 0:
            x = load(os.path.join(args.dir, "input.safetensors"))["x"]
            for t in TICKETS:
                onnx_path = os.path.join(args.dir, t + ".onnx")
                onnx_resnet(load(os.path.join(args.dir, t + ".safetensors")), onnx_path, x.shape)
                want = load(os.path.join(args.dir, t + ".logits.safetensors"))["logits"]
                for engine, make in found.items():
                    run = make(onnx_path, x.shape[0])
                    compiled[(engine, t)] = run
                    got = run(x)
                    errors.setdefault(engine, {})[t] = float(
                        np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
        for engine in found:
            row[engine] = {t: timed(compiled[(engine, t)], x, args.iters) for t in TICKETS}
        rounds.append(row)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    medians = {"dwlth sparse engine": {
        t: statistics.median(row["dwlth"][DWLTH_KEYS[t]] for row in rounds) for t in TICKETS}}
    medians["dwlth dense Burn model"] = {
        "r50_s0": statistics.median(row["dwlth"]["r50_infer_224_b8_img_s"] for row in rounds)}
    for engine in found:
        medians[engine] = {t: statistics.median(row[engine][t] for row in rounds) for t in TICKETS}
    print(json.dumps({"threads": args.threads, "batch": int(x.shape[0]), "rounds": rounds,
                      "median_img_s": medians, "max_rel_logit_err_vs_dwlth": errors,
                      "missing": missing}, indent=2))


if __name__ == "__main__":
    main()
