"""The base of every config schema (unknown keys and non-finite floats refused) and YAML in,
one-line errors out."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from atrous.errors import ConfigError

T = TypeVar("T", bound=BaseModel)

# Configs are a few KB; a bound keeps a hostile file from costing minutes of parsing.
MAX_CONFIG_BYTES = 1 << 20


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @field_validator("*", mode="after")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        """Refuse NaN and infinities in every float field, tuples and lists of floats included:
        a NaN learning rate trains NaN weights, a NaN budget disables the budget."""
        if _non_finite(value):
            raise ValueError(f"must be finite (no NaN or infinity), got {value}")
        return value


def _non_finite(value: Any) -> bool:
    """True for a NaN or infinite float, or a tuple/list holding one (at any depth)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, tuple | list):
        return any(_non_finite(v) for v in value)
    return False


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, raising ConfigError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size} bytes is too large for a config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(
            f"{path}: malformed YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def format_validation_error(error: ValidationError, source: str) -> str:
    """Turn pydantic's error list into one line naming the source and the first bad key."""
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        return _one_line(f"{source}: unknown key '{key}'")
    if kind == "missing":
        return _one_line(f"{source}: missing required key '{key}'")
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    where = f" key '{key}':" if key else ""  # a check across sections names its keys itself
    return _one_line(f"{source}:{where} {message}{more}")


def _one_line(text: str) -> str:
    """Escape line breaks (from keys or values in the user's file) so a message stays one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def parse_config(schema: type[T], data: dict[str, Any], source: str = "<config>") -> T:
    """Validate ``data`` against ``schema``; errors become one-line ConfigErrors."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested mapping, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        except RecursionError:
            raise ConfigError(f"override {key!r}: value nested too deeply") from None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data
