"""Compile options: one dataclass, so the CLI, the library and the manifest
agree on names and defaults. Each field's metadata carries its command-line
flag and help text; `s4dc.cli` builds its compile flags from them, so a new
option is one field here."""
from __future__ import annotations

from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any

from s4dc.errors import S4dcError


class OptionError(S4dcError):
    """An unknown or out-of-range compile option."""


OBJECTIVES = ("cores", "latency", "energy", "edp")


def _opt(default: Any, help: str, flag: str | None = None, *, cli: bool = True,
         choices: tuple[str, ...] | None = None, metavar: str | None = None) -> Any:
    """A compile option with its command-line flag (default: --field-name;
    for a boolean that defaults to True, the flag turns it off)."""
    return field(default=default, metadata={"help": help, "flag": flag, "cli": cli, "choices": choices,
                                            "metavar": metavar})


@dataclass(frozen=True)
class CompileOptions:
    float_only: bool = _opt(False, "skip quantization: a float network (run by the float executor)", "--float")
    calibration: str | None = _opt(
        None, ".npz with key 'x' (or a .npy array) shaped like the model input, for quantization "
        "(default: synthetic standard-normal sequences; s4dc.compile also takes the array itself)",
        metavar="DATA.npz")
    config: str | None = _opt(None, "precision config, JSON or YAML (hls4ml style: Model / LayerName)",
                               metavar="FILE")
    seq_len: int | None = _opt(None, "time length, for models whose time axis is dynamic", metavar="L")
    fit_tol: float = _opt(1e-5, "kernel fit: max relative L2 error per channel", metavar="TOL")
    max_modes: int = _opt(64, "kernel fit: max complex modes per channel", metavar="N")
    cond_max: float = _opt(1e8, "diagonalize: max eigenvector condition number", metavar="C")
    verify_numerics: bool = _opt(False, "check every pass numerically against the frontend", "--verify")
    jobs: int = _opt(0, "worker processes for kernel fitting (0: one per CPU, at most 2); "
                        "results are identical for any value", cli=False)
    strict: bool = _opt(False, "make warnings errors: a run longer than a convolution kernel, "
                               "saturation beyond the threshold, a quantized output over 10% RMS from float")
    place: bool = _opt(True, "skip partitioning and placement", "--no-place")
    hardware: str | None = _opt(None, "hardware model file (JSON; docs/hardware_model.md)", metavar="HW.json")
    chips: int | None = _opt(None, "chips in the system (default: the hardware model's, 1)", metavar="N")
    objective: str = _opt("cores", "what the partitioner minimizes", choices=OBJECTIVES)
    max_latency_us: float | None = _opt(None, "partition: largest modelled latency per token (us)", metavar="US")
    max_cores: int | None = _opt(None, "partition: most neurocores to use", metavar="N")
    place_seed: int = _opt(0, "placement search seed (same seed, same placement)", "--seed", metavar="S")
    place_budget: float = _opt(30.0, "placement search budget, deterministic units of about 1 s", metavar="B")

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
        if opts.objective not in OBJECTIVES:
            raise OptionError(f"objective must be one of {', '.join(OBJECTIVES)}, got {opts.objective!r}")
        if opts.max_latency_us is not None and not opts.max_latency_us > 0:
            raise OptionError(f"max_latency_us must be > 0, got {opts.max_latency_us}")
        if opts.max_cores is not None and opts.max_cores < 1:
            raise OptionError(f"max_cores must be >= 1, got {opts.max_cores}")
        return opts

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def cli_fields() -> list[Field]:
    """The options the command line offers, in declaration order."""
    return [f for f in fields(CompileOptions) if f.metadata.get("cli", True)]


def flag_of(f: Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def default_of(f: Field) -> Any:
    return None if f.default is MISSING else f.default
