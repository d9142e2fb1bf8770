"""Compile options: one dataclass, so the CLI, the library and the manifest
agree on names and defaults."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from s4dc.errors import S4dcError


class OptionError(S4dcError):
    """An unknown or out-of-range compile option."""


@dataclass(frozen=True)
class CompileOptions:
    float_only: bool = False     # skip quantization: a float network
    calibration: str | None = None  # .npz with key 'x' shaped like the model input
                                    # (s4dc.compile also takes the array itself)
    config: str | None = None    # precision config (JSON or YAML), hls4ml style
    seq_len: int | None = None   # time length for models whose time axis is dynamic
    fit_tol: float = 1e-5        # kernel fit: max relative L2 error per channel
    max_modes: int = 64          # kernel fit: max complex modes per channel
    cond_max: float = 1e8        # diagonalize: max eigenvector condition number
    verify_numerics: bool = False  # run the float executor after every pass and compare
    jobs: int = 0                # worker processes for kernel fitting (0: one per CPU, at most 2);
                                 # results are identical for any value
    place: bool = True           # partition and place on Loihi 2 cores (quantized networks)
    hardware: str | None = None  # hardware model file (JSON), docs/hardware_model.md
    chips: int | None = None     # chips in the system (overrides the hardware model)
    place_seed: int = 0          # placement search seed (same seed, same placement)
    place_budget: float = 30.0   # placement search budget in deterministic units (about 1 s each)

    @classmethod
    def make(cls, **kw: Any) -> "CompileOptions":
        names = {f.name for f in fields(cls)}
        bad = sorted(set(kw) - names)
        if bad:
            raise OptionError(f"unknown compile option(s) {', '.join(bad)}; known: {', '.join(sorted(names))}")
        opts = cls(**kw)
        if opts.seq_len is not None and opts.seq_len < 1:
            raise OptionError(f"seq_len must be >= 1, got {opts.seq_len}")
        if not 0 < opts.fit_tol < 1:
            raise OptionError(f"fit_tol must be in (0, 1), got {opts.fit_tol}")
        if opts.chips is not None and opts.chips < 1:
            raise OptionError(f"chips must be >= 1, got {opts.chips}")
        if opts.place_budget < 0:
            raise OptionError(f"place_budget must be >= 0, got {opts.place_budget}")
        if opts.max_modes < 1:
            raise OptionError(f"max_modes must be >= 1, got {opts.max_modes}")
        return opts

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
