"""The backbone registry: every backbone file registers itself here with one decorator.

A leaf module (standard library only), so ``atrous.config`` can check ``ModelConfig.backbone``
against it without importing the models. The registry finds the backbones itself: on the first
lookup (and again on a miss) it imports every public module of ``atrous.models.backbones``, whose
decorators fill the table. Adding a backbone is therefore one new file in that package.
(timm ``_registry``, torchvision ``_api``.)
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BACKBONE_PACKAGE",
    "BackboneSpec",
    "Signature",
    "backbone_fields",
    "discover_backbones",
    "get_backbone",
    "list_backbones",
    "register_backbone",
]

BACKBONE_PACKAGE = "atrous.models.backbones"

# A backbone's state-dict signature: given the backbone's own keys (the ``backbone.`` prefix
# removed) it returns the ModelConfig fields they imply (``backbone`` included), or None when the
# keys are not this backbone's; ValueError when they are its own but fit none of its variants.
Signature = Callable[[Mapping[str, Any]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone name.

    Args:
        name: the value of ``ModelConfig.backbone`` that builds it.
        factory: keyword-only builder: ``factory(output_stride=..., **{f: config.f for f in
            fields})`` returns the backbone module.
        fields: the ModelConfig fields it takes besides ``output_stride``; every other
            backbone-specific field must stay at its default for this backbone.
        signature: recognises this backbone's state_dict keys (see ``Signature``).
        module: the file that registered it (for messages).
    """

    name: str
    factory: Callable[..., Any]
    fields: tuple[str, ...]
    signature: Signature
    module: str


_BACKBONES: dict[str, BackboneSpec] = {}
_scanned = False


def register_backbone(
    name: str, *, fields: tuple[str, ...] = (), signature: Signature
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a keyword-only backbone builder under ``name``.

    Duplicate names raise: two files claiming one name is a programming error.
    """

    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        module = getattr(factory, "__module__", "?")
        if name in _BACKBONES:
            raise ValueError(
                f"duplicate backbone {name!r} (from {module}; already from "
                f"{_BACKBONES[name].module})"
            )
        _BACKBONES[name] = BackboneSpec(name, factory, tuple(fields), signature, module)
        return factory

    return decorate


def discover_backbones() -> None:
    """Import every public module of the backbone package (their decorators register them)."""
    global _scanned
    package = importlib.import_module(BACKBONE_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        name = f"{BACKBONE_PACKAGE}.{info.name}"
        if not info.name.startswith("_") and name not in sys.modules:
            importlib.import_module(name)
    _scanned = True


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching a glob pattern, sorted."""
    if not _scanned:
        discover_backbones()
    return sorted(n for n in _BACKBONES if fnmatch.fnmatch(n, pattern))


def get_backbone(name: str) -> BackboneSpec:
    """The spec registered as ``name``; ValueError listing the known names otherwise."""
    if name not in _BACKBONES:
        discover_backbones()  # a miss rescans: a file added since the last scan is found
    try:
        return _BACKBONES[name]
    except KeyError:
        known = ", ".join(list_backbones())
        raise ValueError(f"unknown backbone {name!r}; known: {known}") from None


def backbone_fields() -> set[str]:
    """Every ModelConfig field that at least one registered backbone takes."""
    return {f for n in list_backbones() for f in _BACKBONES[n].fields}
