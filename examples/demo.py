"""`make demo`: compile the shipped digits model (an n-S4D trained in PyTorch,
exported in the convolution form by torch.onnx's dynamo exporter) for Loihi 2
with the s4dc command line (kernels realized as stable state spaces,
post-training quantization to Loihi 2 integers), run it in the bit-exact
simulator on the full test split, and compare with onnxruntime."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import s4dc

HERE = Path(__file__).parent
MODEL, TEST = HERE / "digits" / "model.onnx", HERE / "digits" / "test.npz"
OUT = Path("out") / "digits"


def main() -> int:
    exe = Path(sys.executable).with_name("s4dc")
    calib = HERE / "digits" / "calibration.npz"
    print(f"$ s4dc {MODEL} -o {OUT} --calibration {calib}", flush=True)
    if subprocess.run([str(exe), str(MODEL), "-o", str(OUT), "--calibration", str(calib)]).returncode != 0:
        return 1
    data = np.load(TEST)
    x, labels = data["x"], data["y"]
    np.save(OUT.parent / "digits_x.npy", x)
    print(f"\n$ s4dc run {OUT} {OUT.parent / 'digits_x.npy'} -o {OUT.parent / 'digits_y.npy'}", flush=True)
    t0 = time.perf_counter()
    if subprocess.run([str(exe), "run", str(OUT), str(OUT.parent / "digits_x.npy"),
                       "-o", str(OUT.parent / "digits_y.npy")]).returncode != 0:
        return 1
    run_s = time.perf_counter() - t0
    y = np.load(OUT.parent / "digits_y.npy")
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    y_ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    net = s4dc.load(OUT)
    ssm = list(net.graph.by_op("qssm"))
    live = sum(int(np.count_nonzero(l.params["c_re"] | l.params["c_im"])) for l in ssm)
    print(f"\n{len(labels)} test sequences of {x.shape[1]} steps; {len(ssm)} S4D layers realized as {live} live "
          "complex states, run token by token in Loihi 2 integer arithmetic (bit-exact simulator)")
    print(f"accuracy  onnxruntime, float (convolution form): {np.mean(y_ref.argmax(1) == labels):.4f}")
    print(f"accuracy  s4dc, Loihi 2 integers (recurrent):    {np.mean(y.argmax(1) == labels):.4f}")
    print(f"predictions that differ: {int(np.sum(y.argmax(1) != y_ref.argmax(1)))} of {len(labels)}")
    print(f"s4dc run: {run_s:.2f} s for the whole split")
    print(f"placement, quantization and cost: open {OUT / 'report.html'} in a browser (or: s4dc report {OUT})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
