"""Report load time and size (`make bench-report`): compiles each example,
opens OUT/report.html in headless Chromium three times, and prints the page's
own load time (its script records performance.now() at the load event) and
the file size. Goals (reports issue): under 1 s and under 2 MB.

    .venv/bin/python benchmarks/report_load.py
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import s4dc

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--dump-dom"]


def main() -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found: make chromium")
    for name in ("digits", "fashion"):
        ex = ROOT / "examples" / name
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "net"
            s4dc.compile(ex / "model.onnx", calibration=str(ex / "calibration.npz")).save(out)
            page = out / "report.html"
            times = []
            for _ in range(3):
                with tempfile.TemporaryDirectory() as prof:
                    dom = subprocess.run([browser, *FLAGS, f"--user-data-dir={prof}", page.as_uri()],
                                         capture_output=True, text=True, timeout=60).stdout
                m = re.search(r'data-load-ms="([0-9.]+)"', dom)
                times.append(float(m.group(1)) if m else float("nan"))
            size = page.stat().st_size
            print(f"{name:<8} report.html {size / 1024:7.1f} KiB (goal < 2048 KiB), load "
                  f"{min(times):6.0f} ms best / {max(times):6.0f} ms worst of 3 (goal < 1000 ms)")


if __name__ == "__main__":
    main()
