"""Desktop naming patterns: `{n}` or `{n:fixed=N}` inside a prefix (DESIGN.md).

`VDI-{n:fixed=3}` gives VDI-001, VDI-002, ...; `LAB-{n}` gives LAB-1, LAB-2, ...; a pattern
with no token gets the number appended. Names are at most 15 characters (NetBIOS).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_NAME_LENGTH = 15
TOKEN = re.compile(r"\{n(?::fixed=(\d+))?\}")
# NetBIOS computer names: letters, digits and hyphens (no leading or trailing hyphen).
ALLOWED_CHARS = re.compile(r"[A-Za-z0-9-]*")


class NamingError(ValueError):
    pass


@dataclass(frozen=True)
class Pattern:
    prefix: str
    suffix: str
    width: int  # 0 = no padding

    def format(self, n: int) -> str:
        number = str(n).zfill(self.width) if self.width else str(n)
        return f"{self.prefix}{number}{self.suffix}"

    @property
    def max_number(self) -> int | None:
        return 10**self.width - 1 if self.width else None


def parse(pattern: str) -> Pattern:
    pattern = pattern.strip()
    if not pattern:
        raise NamingError("The naming pattern is empty.")
    tokens = list(TOKEN.finditer(pattern))
    if len(tokens) > 1:
        raise NamingError("Use the {n} token at most once.")
    if tokens:
        token = tokens[0]
        prefix, suffix = pattern[: token.start()], pattern[token.end() :]
        width = int(token.group(1)) if token.group(1) else 0
        if token.group(1) is not None and not 1 <= width <= MAX_NAME_LENGTH - 1:
            raise NamingError(f"fixed=N must be between 1 and {MAX_NAME_LENGTH - 1}.")
    else:
        prefix, suffix, width = pattern, "", 0
    for part in (prefix, suffix):
        if "{" in part or "}" in part:
            raise NamingError("Unknown token: only {n} and {n:fixed=N} are understood.")
        if not ALLOWED_CHARS.fullmatch(part):
            raise NamingError("Desktop names may contain only letters, digits and hyphens.")
    if prefix.startswith("-") or (suffix or "").endswith("-"):
        raise NamingError("A desktop name cannot start or end with a hyphen.")
    if not prefix and not suffix:
        raise NamingError("Give the names a prefix, for example VDI-{n:fixed=3}.")
    return Pattern(prefix, suffix, width)


def names(pattern: str, count: int, taken: Iterable[str] = ()) -> list[str]:
    """The first `count` names of the pattern that are not in `taken`.

    Raises NamingError if the names would exceed 15 characters or run out of numbers.
    """
    parsed = parse(pattern)
    if count <= 0:
        return []
    taken_upper = {name.upper() for name in taken}
    result: list[str] = []
    for n in _numbers(parsed):
        name = parsed.format(n)
        if len(name) > MAX_NAME_LENGTH:
            raise NamingError(
                f"Names from {pattern!r} reach {len(name)} characters ({name}); "
                f"the limit is {MAX_NAME_LENGTH}."
            )
        if name.upper() not in taken_upper:  # Windows computer names are case-insensitive
            result.append(name)
            if len(result) == count:
                return result
    raise NamingError(
        f"{pattern!r} has only {parsed.max_number} numbers; not enough for {count} more desktops."
    )


def _numbers(parsed: Pattern) -> Iterator[int]:
    n = 1
    while parsed.max_number is None or n <= parsed.max_number:
        yield n
        n += 1
