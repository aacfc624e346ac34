"""A driver's endpoint settings: a frozen dataclass whose fields say how to show and check them.

Each driver declares the settings an administrator gives its endpoints as a frozen dataclass
of plain values (str, int, float, bool), every field made with `setting()`: its label, help
text, default, whether it may be left blank, its choices or bounds, and the group it is shown
in. The portal keeps them in one JSON field of the endpoint's row; `parse` checks that JSON
against the class and names the bad key, and the admin builds its form from `describe`.

Settings never hold a secret: a driver that needs a password names where it is read from (an
environment variable, a file) and reads it with `read_secret` when it connects, so the secret
stays out of the database.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.drivers.base import DriverError

TYPES = (str, int, float, bool)
_KEY = "portal"  # our entry in dataclasses.field(metadata=...)


class SettingsError(DriverError):
    """An endpoint's settings do not fit its driver's settings class; `key` names the setting
    at fault ("" when the settings as a whole are wrong)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Setting:
    """What a settings field says about itself (from `setting()`)."""

    name: str
    type: type
    label: str
    help_text: str
    default: Any
    required: bool  # a blank (empty) value is refused
    choices: tuple[tuple[Any, str], ...]  # (value, label); empty: any value of the type
    min_value: float | None
    max_value: float | None
    group: str


def setting(
    default: Any,
    *,
    label: str,
    help_text: str = "",
    required: bool = False,
    choices: tuple[tuple[Any, str], ...] = (),
    min_value: float | None = None,
    max_value: float | None = None,
    group: str = "Settings",
) -> Any:
    """A settings field. Every field has a default (what a new endpoint's form starts from);
    `required` refuses the empty string for it."""
    meta = {
        "label": label,
        "help_text": help_text,
        "required": required,
        "choices": tuple(choices),
        "min_value": min_value,
        "max_value": max_value,
        "group": group,
    }
    return dataclasses.field(default=default, metadata={_KEY: meta})


def describe(settings_class: type) -> list[Setting]:
    """The settings of a settings class, in declaration order."""
    hints = typing.get_type_hints(settings_class)
    out = []
    for f in dataclasses.fields(settings_class):
        meta = f.metadata.get(_KEY)
        if meta is None:
            raise TypeError(f"{settings_class.__name__}.{f.name} is not made with setting()")
        kind = hints[f.name]
        if kind not in TYPES:
            raise TypeError(f"{settings_class.__name__}.{f.name}: {kind!r} is not one of {TYPES}")
        out.append(Setting(name=f.name, type=kind, default=f.default, **meta))
    return out


def groups(settings_class: type) -> dict[str, str]:
    """The groups the settings are shown in, in order, each with its description (the class's
    optional `GROUPS`, a dict of group -> description)."""
    described = getattr(settings_class, "GROUPS", {})
    out: dict[str, str] = {}
    for s in describe(settings_class):
        out.setdefault(s.group, described.get(s.group, ""))
    return out


_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}


def check_value(s: Setting, value: Any) -> Any:
    """The value, checked against its setting (a float setting takes a whole number too)."""
    fits = (isinstance(value, s.type) and not (s.type is int and isinstance(value, bool))) or (
        s.type is float and isinstance(value, int) and not isinstance(value, bool)
    )
    if not fits:
        raise SettingsError(
            s.name, f"setting {s.name!r} must be {_TYPE_NAMES[s.type]}, not {value!r}"
        )
    if s.type is float:
        value = float(value)
    if s.required and value == "":
        raise SettingsError(s.name, f"setting {s.name!r} ({s.label}) is required")
    if s.choices and value not in [c for c, _ in s.choices]:
        allowed = ", ".join(repr(c) for c, _ in s.choices)
        raise SettingsError(s.name, f"setting {s.name!r} must be one of {allowed}, not {value!r}")
    if s.min_value is not None and value < s.min_value:
        raise SettingsError(s.name, f"setting {s.name!r} must be at least {s.min_value}")
    if s.max_value is not None and value > s.max_value:
        raise SettingsError(s.name, f"setting {s.name!r} must be at most {s.max_value}")
    return value


def parse(settings_class: type, data: Any) -> Any:
    """An instance of `settings_class` from the endpoint's JSON; a missing key takes its
    default. SettingsError names the first bad key: unknown, of the wrong type, blank where
    required, not among the choices, out of bounds."""
    if not isinstance(data, dict):
        raise SettingsError("", f"settings must be a JSON object, not {data!r}")
    known = {s.name: s for s in describe(settings_class)}
    for key in data:
        if key not in known:
            names = ", ".join(known) or "none"
            raise SettingsError(key, f"unknown setting {key!r} (this driver's: {names})")
    values = {}
    for name, s in known.items():
        values[name] = check_value(s, data.get(name, s.default))
    return settings_class(**values)


def dump(settings: Any) -> dict:
    """The JSON kept on the endpoint's row: every setting, defaults included."""
    return dataclasses.asdict(settings)


def read_secret(env_var: str, file: str, whose: str) -> str:
    """A secret from the environment variable `env_var` when it is set, else from `file`
    (a mounted secret, say). DriverError says which was tried."""
    if env_var and os.environ.get(env_var):
        return os.environ[env_var]
    if file:
        try:
            return Path(file).read_text().strip()
        except OSError as exc:
            raise DriverError(
                f"cannot read the password file {file} of {whose}: {exc.strerror}"
            ) from exc
    where = " or ".join(filter(None, [env_var and f"${env_var}", file]))
    raise DriverError(
        f"no password for {whose}: "
        + (f"{where} is empty" if where else "set its password variable or password file")
    )
