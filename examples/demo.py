"""`make demo`: compile the shipped digits model (an n-S4D trained in PyTorch,
exported in the convolution form by torch.onnx's dynamo exporter) with the
s4dc command line, run it on the full test split, and compare with
onnxruntime."""
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
    print(f"$ s4dc {MODEL} -o {OUT}", flush=True)
    if subprocess.run([str(exe), str(MODEL), "-o", str(OUT)]).returncode != 0:
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
    ssm = list(net.graph.by_op("ssm"))
    print(f"\n{len(labels)} test sequences of {x.shape[1]} steps, {len(ssm)} S4D layers realized as "
          f"{sum(l.params['A'].size for l in ssm)} complex states (recurrent form, as Loihi 2 runs it)")
    print(f"accuracy  onnxruntime (convolution form): {np.mean(y_ref.argmax(1) == labels):.4f}")
    print(f"accuracy  s4dc float network (recurrent): {np.mean(y.argmax(1) == labels):.4f}")
    print(f"max |s4dc - onnxruntime| / max |onnxruntime| = {np.abs(y - y_ref).max() / np.abs(y_ref).max():.2e}")
    print(f"s4dc run: {run_s:.2f} s for the whole split")
    return 0


if __name__ == "__main__":
    sys.exit(main())
