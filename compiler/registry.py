"""A name -> implementation table that refuses duplicates.

The IR's op set, the frontend's ONNX handlers, the passes and every target
(float executor, bit-exact simulator, Lava backend, cost model) keep their
per-op entries in one of these, so a new op registers an entry per table
instead of adding a branch to if-chains (docs/architecture.md).
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class DuplicateRegistration(RuntimeError):
    """Two entries for one name: a programming error, raised at import."""


class Registry(Generic[T]):
    def __init__(self, what: str):
        self.what = what  # "IR op", "float executor", ... (for messages)
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise DuplicateRegistration(f"{self.what}: '{name}' is registered twice")
        self._items[name] = item
        return item

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator: `@REG.register("affine")`; several names share one entry."""
        def deco(item: T) -> T:
            for n in names:
                self.add(n, item)
            return item
        return deco

    def remove(self, name: str) -> None:
        """Drop an entry (tests that register a toy op clean up with this)."""
        del self._items[name]

    def get(self, name: str) -> T | None:
        return self._items.get(name)

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)
