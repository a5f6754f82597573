"""Name -> entry registries, shared by models, attacks, detectors, eliminators, datasets and profiles.

One small class so that every ``*.build(name, ...)`` and ``*.get(name)`` behaves the same:

- names are case-insensitive and ``-`` and ``_`` are the same character, so ``"scale-up"`` finds
  ``"scale_up"`` and ``"tiny_imagenet"`` finds ``"tiny-imagenet"``; ``available()`` lists the
  spelling each entry was registered with, which is also the one :meth:`Registry.canonical` returns
  (and hence the one that lands in cache keys and result tables);
- unknown names raise a ``ValueError`` naming the bad value and listing the valid ones;
- a second registration of the same name (in any spelling) is refused, so a user's entry can never
  silently replace a built-in one.

The module also holds the one signature walk that both :meth:`Registry.defaults` (the book's
parameter table) and :meth:`Configurable.params` (what every method records in cache keys and result
tables) are derived from, so the two cannot disagree.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, ClassVar, Generic, Iterator, TypeVar

T = TypeVar("T")

__all__ = ["Registry", "Configurable", "constructor_parameters"]


def _key(name: str) -> str:
    """The lookup form of a name: lower case, ``-`` written as ``_``."""
    return name.lower().replace("-", "_")


@functools.lru_cache(maxsize=None)
def _parameters(factory: Callable[..., Any]) -> tuple[inspect.Parameter, ...]:
    if inspect.isclass(factory):
        found: dict[str, inspect.Parameter] = {}
        for klass in inspect.getmro(factory):  # most derived first; a base only through **kwargs
            if klass is object:
                break
            if "__init__" not in vars(klass):
                continue
            sig = list(inspect.signature(klass.__init__).parameters.values())[1:]  # drop self
            for p in sig:
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    found.setdefault(p.name, p)
            if not any(p.kind is p.VAR_KEYWORD for p in sig):
                break
        return tuple(found.values())
    sig = inspect.signature(factory).parameters.values()
    return tuple(p for p in sig if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


def constructor_parameters(factory: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """Every named parameter a factory accepts, in signature order, most derived class first.

    For a class, the walk follows the MRO and only continues into a base class when the subclass's
    ``__init__`` passes ``**kwargs`` on (``STRIP(n_overlays=..., **kwargs)`` also accepts every
    parameter of ``Detector.__init__``); a subclass that spells out its base's parameters stops it.

    Args:
        factory: a class or a function.

    Returns:
        ``{name: inspect.Parameter}``; ``self``, ``*args`` and ``**kwargs`` are left out.
    """
    return {p.name: p for p in _parameters(factory)}


class Configurable:
    """Mixin for methods whose ``params()`` is derived from their constructor signature.

    Convention: every constructor parameter is stored as an attribute of the same name (after
    validation and normalisation, e.g. ``float(lr)``). ``params()`` returns all of them except the
    names in ``params_exclude``: those that do not change what the method computes (``device``,
    ``progress``) or that every consumer records beside ``params()`` anyway (``seed``; an attack's
    ``target`` and ``rate``, which :meth:`beniful.attacks.base.Attack.config` adds). A subclass extends the set with
    ``params_exclude = Base.params_exclude | {"name"}`` and may still override ``params`` (Blended
    records its user pattern by content).
    """

    #: constructor parameters left out of :meth:`params` (and then need no attribute of that name)
    params_exclude: ClassVar[frozenset[str]] = frozenset()

    def params(self) -> dict[str, Any]:
        """The method's parameters, recorded in cache keys and result tables.

        Returns:
            ``{name: value}`` for every constructor parameter not in ``params_exclude``, in
            signature order; ``type(self)(**obj.params())`` builds an object with equal params.

        Raises:
            AttributeError: a constructor parameter is neither stored nor excluded (a coding error
                in the subclass, reported by name instead of being left out of the cache key).
        """
        out: dict[str, Any] = {}
        for name in constructor_parameters(type(self)):
            if name in self.params_exclude:
                continue
            try:
                value = getattr(self, name)
            except AttributeError:
                raise AttributeError(
                    f"{type(self).__name__} takes the parameter {name!r} but stores no attribute "
                    f"of that name: store it as self.{name} or add it to params_exclude"
                ) from None
            out[name] = dict(value) if isinstance(value, dict) else value
        return out


class Registry(Generic[T]):
    """A mapping from names to entries: factories (models, attacks, methods) or specs (datasets, profiles).

    Args:
        kind: what the entries are ("dataset", "detector", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, tuple[str, T]] = {}  # lookup key -> (registered spelling, entry)

    # ------------------------------------------------------------------ registration
    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``.

        Args:
            name: the name to list in :meth:`available`; ``-``/``_`` and case do not matter for
                lookups.
            entry: the factory or spec.

        Returns:
            ``entry`` itself.

        Raises:
            TypeError: ``name`` is not a non-empty string.
            ValueError: the name (in any spelling) is already registered.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.kind} name must be a non-empty string, got {name!r}")
        key = _key(name)
        if key in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice (already as {self._entries[key][0]!r})")
        self._entries[key] = (name, entry)
        return entry

    def add_spec(self, spec: T, spec_type: type) -> T:
        """Register a spec object under its own ``spec.name`` (data sets, profiles).

        Args:
            spec: the spec; it must be an instance of ``spec_type``.
            spec_type: the class every entry of this registry is.

        Returns:
            ``spec`` itself.

        Raises:
            TypeError: ``spec`` is of another type.
            ValueError: the name (in any spelling) is already registered.
        """
        if not isinstance(spec, spec_type):
            raise TypeError(f"register() takes a {spec_type.__name__}, got {type(spec).__name__}")
        return self.add(spec.name, spec)  # type: ignore[attr-defined]

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@ATTACKS.register("badnets")`` above a class.

        Args:
            name: the name to register the decorated object under.

        Returns:
            A decorator that registers its argument and returns it unchanged.
        """

        def deco(entry: T) -> T:
            return self.add(name, entry)

        return deco

    def unregister(self, name: str) -> T:
        """Remove an entry (tests, or replacing one's own registration deliberately).

        Args:
            name: a registered name, in any spelling.

        Returns:
            The removed entry.
        """
        self.get(name)
        return self._entries.pop(_key(name))[1]

    # ------------------------------------------------------------------ lookup
    def available(self) -> list[str]:
        """The registered names, sorted, as they were spelled at registration.

        Returns:
            A new list of names.
        """
        return sorted(spelling for spelling, _ in self._entries.values())

    def canonical(self, name: str) -> str:
        """The registered spelling of ``name`` (``"Tiny_ImageNet"`` -> ``"tiny-imagenet"``); an unknown
        name raises as :meth:`get` does.

        Args:
            name: a name in any case, with ``-`` or ``_``.

        Returns:
            The spelling the entry was registered under, for labels and cache keys.

        Raises:
            ValueError: no entry has that name (a non-string raises a TypeError), as in :meth:`get`.
        """
        return self._lookup(name)[0]

    def get(self, name: str) -> T:
        """The entry registered under ``name``.

        Args:
            name: a name in any spelling.

        Returns:
            The factory or spec.

        Raises:
            TypeError: ``name`` is not a string.
            ValueError: no entry has that name; the message lists the valid ones.
        """
        return self._lookup(name)[1]

    def _lookup(self, name: str) -> tuple[str, T]:
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a string, got {type(name).__name__}")
        try:
            return self._entries[_key(name)]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.available())}"
            ) from None

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call the factory registered under ``name``.

        Args:
            name: a name in any spelling.
            **kwargs: passed to the factory.

        Returns:
            What the factory returns (a model, an attack, a detector, ...).
        """
        return self.get(name)(**kwargs)  # type: ignore[operator]

    def defaults(self, name: str) -> dict[str, Any]:
        """The constructor defaults of a registered factory, from the same signature walk as ``params()``.

        Args:
            name: a registered factory's name, in any spelling.

        Returns:
            ``{parameter: default}`` for every parameter that has a default, in signature order
            (including the ones a method leaves out of ``params()``, such as ``device``).
        """
        return {n: p.default for n, p in constructor_parameters(self.get(name)).items()  # type: ignore[arg-type]
                if p.default is not inspect.Parameter.empty}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.available())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.available())})"
