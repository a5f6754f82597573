"""Digests of the package source an artefact depends on, so that every cache follows the code.

A cached artefact (a trained model, a fitted detector, a repaired model) is only valid for the code
that made it. Its key therefore carries :func:`source_digest` of the objects that made it: the
modules they are defined in plus, transitively, every ``beniful`` module those import. An edit of
any of these files gives a new key and the artefact is rebuilt; an edit of an unrelated module
(another attack, another detector) keeps the cache.

Imports are read statically from the source with :mod:`ast` (nothing is executed), anywhere in a
module, including imports inside functions:

- ``from . import attacks`` (a package) counts ``beniful.attacks``, its ``__init__``, and what that
  imports; ``from .attacks.base import Attack`` counts ``beniful.attacks.base`` alone. The parent
  packages that Python runs on the way are not counted: they only register their modules, and
  ``beniful/__init__.py`` imports everything, so counting them would make every digest the
  whole package's and every edit would invalidate every cache.
- Modules loaded with :mod:`importlib` by a computed name (the registries' plug-in loops) are not
  seen; pass such a module itself if an artefact depends on it.
- Code outside the package is not followed: a user's subclass counts the ``beniful`` modules of its
  bases, and its own behaviour must show in the parameters the cache key already holds.

The digest hashes module names and file bytes in module-name order, so it is the same in every
checkout and on every machine with the same sources. It is cached per process, since the keys are
computed often (every ``zoo.get``, every detector fit and repair); call :func:`clear_cache` after
editing files in a running process (with :func:`importlib.reload`).
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import types
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["PACKAGE", "PACKAGE_ROOT", "source_modules", "source_digest", "clear_cache"]

PACKAGE = "beniful"
#: the folder whose files are read for the ``beniful`` modules (the installed package itself)
PACKAGE_ROOT = Path(__file__).resolve().parent


def _inside(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _file(root: Path, name: str) -> Path | None:
    """The source file of module ``name`` under ``root`` (a package's ``__init__.py``), or None."""
    parts = name.split(".")[1:]
    base = root.joinpath(*parts)
    for path in (base / "__init__.py", base.with_name(base.name + ".py") if parts else None):
        if path is not None and path.is_file():
            return path
    return None


@lru_cache(maxsize=None)
def _imports(root: Path, name: str) -> tuple[str, ...]:
    """The ``beniful`` modules that module ``name`` imports directly (unresolvable names skipped:
    a guarded import of a module that does not exist yet)."""
    path = _file(root, name)
    assert path is not None
    tree = ast.parse(path.read_bytes(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if _inside(a.name) and _file(root, a.name) is not None)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                if not is_pkg:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not _inside(target):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if alias.name != "*" and _file(root, sub) is not None:
                    found.add(sub)  # a module: ``from . import features``
                elif _file(root, target) is not None:
                    found.add(target)  # a name defined in ``target``
    return tuple(sorted(found))


@lru_cache(maxsize=None)
def _closure(root: Path, names: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_imports(root, name))
    return tuple(sorted(seen))


@lru_cache(maxsize=None)
def _digest(root: Path, names: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in _closure(root, names):
        data = _file(root, name).read_bytes()  # type: ignore[union-attr]
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _module_names(obj: Any) -> list[str]:
    """The ``beniful`` modules ``obj`` stands for: a module (or its dotted name), the module of a
    function, or the modules of a class and of its bases."""
    if isinstance(obj, str):
        names = [obj]
    elif isinstance(obj, types.ModuleType):
        names = [obj.__name__]
    elif isinstance(obj, type):
        names = [k.__module__ for k in inspect.getmro(obj)]
    elif isinstance(obj, (types.FunctionType, types.MethodType)):
        names = [obj.__module__]
    else:
        raise TypeError(f"source_digest takes {PACKAGE} modules, module names, classes and functions; "
                        f"got {obj!r} of type {type(obj).__name__}")
    inside = [n for n in names if _inside(n)]
    if not inside:
        raise ValueError(f"{obj!r} is not defined in the {PACKAGE} package (module {names[0]!r}); "
                         f"only {PACKAGE}'s own source is digested")
    return inside


def source_modules(*objects: Any) -> tuple[str, ...]:
    """The ``beniful`` modules the objects depend on, sorted by name.

    Args:
        *objects: ``beniful`` modules, dotted module names (``"beniful.training"``), classes (their
            module and their bases' modules inside the package) or functions (their module).

    Returns:
        The modules of the objects plus every ``beniful`` module they import, transitively.

    Raises:
        TypeError: for an object of another kind (an instance: pass ``type(obj)``).
        ValueError: for an object defined outside the package or a module name with no source file.
    """
    names: set[str] = set()
    for obj in objects:
        names.update(_module_names(obj))
    root = PACKAGE_ROOT
    missing = sorted(n for n in names if _file(root, n) is None)
    if missing:
        raise ValueError(f"no source file for module {', '.join(map(repr, missing))} under {root} "
                         f"(the {PACKAGE} package)")
    return _closure(root, tuple(sorted(names)))


def source_digest(*objects: Any) -> str:
    """SHA-256 (hex) of the source files of :func:`source_modules` ``(*objects)``.

    Args:
        *objects: as for :func:`source_modules`; their order does not matter.

    Returns:
        A 64-character hex digest that changes whenever one of those files' bytes (or the set of
        modules) changes.
    """
    modules = source_modules(*objects)
    return _digest(PACKAGE_ROOT, modules)


def clear_cache() -> None:
    """Forget the digests and import lists read so far (after editing files in a running process)."""
    for f in (_imports, _closure, _digest):
        f.cache_clear()
