"""Error types. Every error s4dc raises on bad input is an S4dcError subclass
whose message is one line naming what and where, so the CLI can print it and
exit non-zero without a traceback."""
from __future__ import annotations


def first_line(e: BaseException) -> str:
    """An exception's message as one line (its type's name when it has none):
    how s4dc quotes a library's error inside its own."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class S4dcError(Exception):
    """Base class of every error s4dc reports to a user."""

    exit_code = 2

    def __init__(self, *args: object) -> None:
        # One line, whatever a model's names or attribute strings contain.
        super().__init__(*(a.replace("\r", "\\r").replace("\n", "\\n") if isinstance(a, str) else a
                           for a in args))


class ModelLoadError(S4dcError):
    """The input is not a readable, valid ONNX model."""


class UnsupportedOpError(S4dcError):
    """An ONNX node s4dc cannot map to Loihi 2."""


class UnsupportedPatternError(S4dcError):
    """Supported ops arranged in a way s4dc cannot map (layout, shapes, coupling)."""


class InvalidWeightsError(S4dcError):
    """NaN or Inf in a weight tensor."""


class DynamicShapeError(S4dcError):
    """A dimension s4dc needs to know is not fixed (e.g. a dynamic time length)."""


class UnstableSystemError(S4dcError):
    """A state matrix with an eigenvalue on or outside the unit circle."""


class IllConditionedError(S4dcError):
    """Eigenvectors too ill-conditioned to diagonalize a dense state matrix."""


class KernelFitError(S4dcError):
    """No stable realization within the state budget fits a kernel to tolerance."""


class IRVerificationError(S4dcError):
    """The IR failed a structural check (shapes, dtypes, connectivity)."""


class NetworkFormatError(S4dcError):
    """A saved network directory is missing files or has an unknown version."""


class InputDataError(S4dcError):
    """Run-time input of the wrong shape or dtype."""


class BitWidthError(S4dcError):
    """A bit width the hardware cannot hold."""


class CalibrationError(S4dcError):
    """Calibration data of the wrong shape, dtype or content."""


class ConfigError(S4dcError):
    """A precision config file that cannot be read or names unknown layers."""


class ExportError(S4dcError):
    """A PyTorch model s4dc.torch cannot export exactly (names the module)."""


class GridError(S4dcError):
    """Values a model declares on the chip's grid (quantization-aware training) that are not on it."""


class OutputError(S4dcError):
    """An output path s4dc will not write: an existing file or a folder that is not
    an s4dc output folder (without --force), or a location that cannot be written."""


class SizeLimitError(S4dcError):
    """A tensor the model would make beyond s4dc's size limit (refused before allocating it)."""


class FunctionBodyError(S4dcError):
    """A canonical s4dc function whose body does not compute what the op means."""


class KernelLengthError(S4dcError):
    """--strict: a time length beyond a convolution kernel's length."""


class SaturationError(S4dcError):
    """--strict: more saturated values than the warning threshold."""


class QuantizationAccuracyError(S4dcError):
    """--strict: a quantized output further from float than the warning threshold."""


class InternalError(S4dcError):
    """A bug in s4dc, caught at the boundary and reported with where it happened."""

    exit_code = 3


class KernelLengthWarning(UserWarning):
    """A time length beyond a convolution kernel's length (see KernelLengthError)."""


class SaturationWarning(UserWarning):
    """Saturation beyond the warning threshold in a run."""


class QuantizationAccuracyWarning(UserWarning):
    """A quantized output further from float, on the calibration inputs, than
    the warning threshold (see QuantizationAccuracyError)."""
