"""s4dc's PyTorch side (the `torch` extra; the compiler core never imports it).

    from s4dc.torch import NS4D, export
    export(model, x, "model.onnx")   # adapted layers exactly (s4dc.torch.adapters), other LTI layers measured

Fine-tuning against the chip's integers: `s4dc.torch.qat` (docs/qat.md).
"""
try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("s4dc.torch needs PyTorch: pip install 's4dc[torch]'") from e

from s4dc.torch.onnx_export import export, find_s4d  # noqa: E402
from s4dc.torch.layers import NS4D, causal_conv, s4d_kernel  # noqa: E402

__all__ = ["NS4D", "causal_conv", "export", "find_s4d", "s4d_kernel"]
