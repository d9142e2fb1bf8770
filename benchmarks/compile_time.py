"""Compile-time benchmark: frontend plus passes for a convolution-form model
(6 layers, H=256, N=64 states, L=1024), as the TorchScript/dynamo exporters
write it (depthwise Conv with causal pads, D skip, ReLU, pointwise Conv).

Goal (spine issue): frontend plus float passes under 10 s on 2 cores. Prints
total seconds, the system identification (`realize`) share, and the ratio to
the goal; --quantize also times the default compile with quantization.

--mimo times a full (group 1) causal Conv instead, a MIMO kernel of H x H x L
(default 64 x 64 x 784, the Fashion-MNIST length) from a stable 20-mode
system: its block-Hankel realization is most of the compile, against the same
goal.

    .venv/bin/python benchmarks/compile_time.py [--layers 6 --h 256 --n 64 --l 1024] [--mimo [--h 64 --l 784]]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import s4dc

GOAL_S = 10.0


def stock_kernels(rng, H, N, L) -> np.ndarray:
    """S4D-Lin kernels (Gu et al. 2022), ZOH, N/2 complex modes, float32 as in ONNX."""
    dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), H))[:, None]
    A = -0.5 + 1j * np.pi * np.arange(N // 2)[None]
    C = (rng.standard_normal((H, N // 2)) + 1j * rng.standard_normal((H, N // 2))) * 0.5**0.5
    dtA = dt * A
    coef = C * (np.exp(dtA) - 1) / A
    return (2 * (coef[:, :, None] * np.exp(dtA[:, :, None] * np.arange(L))).sum(1).real).astype(np.float32)


def conv_form_model(layers: int, H: int, N: int, L: int, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    nodes.append(helper.make_node("MatMul", ["x", init("enc_w", rng.standard_normal((1, H)))], ["e"]))
    nodes.append(helper.make_node("Transpose", ["e"], ["u0"], perm=[0, 2, 1]))
    cur = "u0"
    for i in range(layers):
        k = stock_kernels(rng, H, N, L)[:, None, ::-1]  # conv weight: kernel flipped in time
        nodes.append(helper.make_node("Conv", [cur, init(f"k{i}", k)], [f"c{i}"], group=H, pads=[L - 1, 0],
                                      kernel_shape=[L]))
        nodes.append(helper.make_node("Mul", [cur, init(f"d{i}", rng.standard_normal((H, 1)))], [f"s{i}"]))
        nodes.append(helper.make_node("Add", [f"c{i}", f"s{i}"], [f"a{i}"]))
        nodes.append(helper.make_node("Relu", [f"a{i}"], [f"r{i}"]))
        w = rng.standard_normal((H, H, 1)) / np.sqrt(H)
        nodes.append(helper.make_node("Conv", [f"r{i}", init(f"w{i}", w), init(f"b{i}", np.zeros(H))],
                                      [f"m{i}"], kernel_shape=[1]))
        cur = f"m{i}"
    nodes.append(helper.make_node("ReduceMean", [cur], ["pool"], axes=[2], keepdims=0))
    nodes.append(helper.make_node("Gemm", ["pool", init("dec_w", rng.standard_normal((10, H))),
                                           init("dec_b", np.zeros(10))], ["y"], transB=1))
    g = helper.make_graph(nodes, "bench", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", L, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def mimo_conv_model(H: int, L: int, modes: int = 20, seed: int = 0) -> onnx.ModelProto:
    """One full causal Conv (H -> H, kernel L) between an encoder and a mean
    readout; its kernel is 2 Re(C lam^l B) of `modes` stable complex modes."""
    from s4dc.passes.kernel_fit.block_hankel import impulse

    rng = np.random.default_rng(seed)
    lam = rng.uniform(0.9, 0.995, modes) * np.exp(1j * rng.uniform(0, np.pi, modes))
    B = (rng.standard_normal((modes, H)) + 1j * rng.standard_normal((modes, H))) / np.sqrt(H)
    C = (rng.standard_normal((H, modes)) + 1j * rng.standard_normal((H, modes))) / np.sqrt(modes)
    k = impulse(lam, B, C, np.zeros((H, H)), L)[:, :, ::-1]   # conv weight: kernel flipped in time
    f32 = lambda name, a: numpy_helper.from_array(np.asarray(a, np.float32), name)  # noqa: E731
    nodes = [helper.make_node("MatMul", ["x", "enc_w"], ["e"]),
             helper.make_node("Transpose", ["e"], ["u"], perm=[0, 2, 1]),
             helper.make_node("Conv", ["u", "k"], ["c"], pads=[L - 1, 0], kernel_shape=[L]),
             helper.make_node("ReduceMean", ["c"], ["pool"], axes=[2], keepdims=0),
             helper.make_node("Gemm", ["pool", "dec_w", "dec_b"], ["y"], transB=1)]
    inits = [f32("enc_w", rng.standard_normal((1, H))), f32("k", k), f32("dec_w", rng.standard_normal((10, H))),
             f32("dec_b", np.zeros(10))]
    g = helper.make_graph(nodes, "bench_mimo", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", L, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def mimo_main(H: int, L: int) -> None:
    model = mimo_conv_model(H, L)
    t0 = time.perf_counter()
    net = s4dc.compile(model, float_only=True)
    total = time.perf_counter() - t0
    sysid = sum(v for k, v in net.timings.items() if k.endswith("_realize"))
    realized = [r["changes"]["realized"] for r in net.manifest["passes"] if r["pass"] == "realize"][0]
    (fit,) = realized.values()
    print(f"model: one full causal Conv, {H} x {H} x {L} MIMO kernel from 20 stable modes")
    print(f"compile total      {total:7.2f} s   (goal {GOAL_S:.0f} s: ratio {total / GOAL_S:.2f})")
    print(f"  realize (block-Hankel) {sysid:7.2f} s   ({100 * sysid / total:.0f}% of total)")
    print(f"realized modes {fit['modes']}, fit error {fit['max_rel_error']:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--h", type=int, default=256)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--l", type=int, default=1024)
    ap.add_argument("--quantize", action="store_true", help="also time the default (quantizing) compile")
    ap.add_argument("--mimo", action="store_true", help="time a full-Conv (MIMO kernel) model instead")
    a = ap.parse_args()
    if a.mimo:
        return mimo_main(64 if a.h == 256 else a.h, 784 if a.l == 1024 else a.l)
    model = conv_form_model(a.layers, a.h, a.n, a.l)
    t0 = time.perf_counter()
    net = s4dc.compile(model, float_only=True)
    total = time.perf_counter() - t0
    t = net.timings
    sysid = sum(v for k, v in t.items() if k.endswith("_realize"))
    frontend = sum(v for k, v in t.items() if k.endswith("_frontend"))
    realized = [r["changes"]["realized"] for r in net.manifest["passes"] if r["pass"] == "realize"][0]
    modes = sorted({v["modes"] for v in realized.values()})
    err = max(v["max_rel_error"] for v in realized.values())
    print(f"model: {a.layers} layers, H={a.h}, N={a.n}, L={a.l} (convolution form, {a.layers * a.h} kernels)")
    print(f"compile total      {total:7.2f} s   (goal {GOAL_S:.0f} s: ratio {total / GOAL_S:.2f})")
    print(f"  frontend         {frontend:7.2f} s")
    print(f"  realize (sysid)  {sysid:7.2f} s   ({100 * sysid / total:.0f}% of total)")
    print(f"  other passes     {total - frontend - sysid:7.2f} s")
    print(f"modes per layer {modes}, worst kernel fit error {err:.2e}")
    if a.quantize:
        t0 = time.perf_counter()
        qnet = s4dc.compile(model)
        qt = time.perf_counter() - t0
        quant = sum(v for k, v in qnet.timings.items() if k.endswith("_quantize"))
        print(f"with quantization (64 synthetic calibration sequences): {qt:.1f} s, quantize pass {quant:.1f} s")


if __name__ == "__main__":
    main()
