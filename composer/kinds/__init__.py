"""The registry of operation kinds: one module per kind in this package.

Each module defines a subclass of `OperationKind` (base.py) decorated with `@register`.
The composer app imports every module of this package when Django starts (apps.py), the
way Django finds each app's admin module, so a new kind needs no list edited anywhere:
`Operation.kind`'s choices, the forms, pages, dispatch and the audit log's names all read
this registry.

This module imports nothing of ours, so composer.models can read the choices from it.
"""

from __future__ import annotations

import importlib
import pkgutil

from composer.kinds.base import MAINTENANCE, PROVISIONING, OperationKind

__all__ = [
    "MAINTENANCE",
    "PROVISIONING",
    "OperationKind",
    "UnknownKind",
    "all_kinds",
    "choices",
    "discover",
    "get",
    "on_pool_page",
    "register",
]

_KINDS: dict[str, OperationKind] = {}


class UnknownKind(KeyError):
    """No operation kind of that name is registered."""


def register(cls: type[OperationKind]) -> type[OperationKind]:
    """Class decorator: make the kind known by its name."""
    if cls.name in _KINDS and type(_KINDS[cls.name]) is not cls:
        raise ValueError(f"two operation kinds are named {cls.name!r}")
    _KINDS[cls.name] = cls()
    return cls


def get(name: str) -> OperationKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownKind(name) from None


def all_kinds() -> list[OperationKind]:
    """Every kind, in the order pages list them (`order`, then name)."""
    return sorted(_KINDS.values(), key=lambda k: (getattr(k, "order", 100), k.name))


def choices() -> list[tuple[str, str]]:
    """Operation.kind's choices (a callable, so a new kind needs no migration of them)."""
    return [(k.name, k.label) for k in all_kinds()]


def on_pool_page() -> list[OperationKind]:
    return [k for k in all_kinds() if k.on_pool_page]


def removing_desktops() -> list[str]:
    """Names of the kinds whose desktops leave the pool (delete)."""
    return [k.name for k in all_kinds() if k.removes_desktops]


def discover() -> None:
    """Import every module of this package, so each registers its kind."""
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
