"""Errors of the Lava backend. All are `s4dc.errors.S4dcError`s, so the CLI
prints them as one line and exits with status 2."""
from __future__ import annotations

from s4dc.errors import S4dcError


class LavaError(S4dcError):
    """Base class of the Lava backend's errors."""


class LavaSetupError(LavaError):
    """No usable Lava environment (.venv-lava): says how to make one."""


class LavaMappingError(LavaError):
    """A network (or a layer of it) that the Lava process graph cannot hold."""


class LavaRunError(LavaError):
    """The Lava run itself failed (the subprocess ended with an error)."""
