"""Name -> class registries, shared by models, attacks, detectors and eliminators.

One small class so every ``*.build(name, ...)`` behaves the same: unknown names raise a
``ValueError`` listing the valid ones, and ``available()`` lists what can be built.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from lower-case names to factories (usually classes)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REGISTRY.register("badnets")``."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            key = name.lower()
            if key in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[key] = factory
            return factory

        return deco

    def available(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., T]:
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a string, got {type(name).__name__}")
        key = name.lower().replace("-", "_")
        for cand in (name.lower(), key):
            if cand in self._entries:
                return self._entries[cand]
        raise ValueError(
            f"unknown {self.kind} {name!r}; valid names: {', '.join(self.available())}"
        )

    def build(self, name: str, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.get(name)
        except ValueError:
            return False
        return True
