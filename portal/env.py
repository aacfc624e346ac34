"""Typed readers for settings taken from the environment.

Each reader fails with ImproperlyConfigured naming the variable, so a bad value stops the
portal at start instead of surfacing later as an obscure error.
"""

import ipaddress
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}: expected one of 1/0, true/false, yes/no, on/off; got {raw!r}"
    )


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {value}")
    return value


def env_choice(name: str, default: str, choices: list[str]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}: expected one of {', '.join(choices)}; got {raw!r}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ImproperlyConfigured(f"{name}: expected a comma-separated list, got {raw!r}")
    return items


def env_origins(name: str) -> list[str]:
    """Origins such as https://portal.example or https://*.example.com; empty means none."""
    raw = os.environ.get(name, "")
    origins = [item.strip() for item in raw.split(",") if item.strip()]
    for origin in origins:
        parsed = urlparse(origin)
        bad_path = bool(parsed.path or parsed.query or parsed.fragment)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc or bad_path:
            raise ImproperlyConfigured(
                f"{name}: expected origins like https://portal.example, got {origin!r}"
            )
    return origins


def env_proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """The header a TLS-terminating proxy sets, as SECURE_PROXY_SSL_HEADER wants it.

    "X-Forwarded-Proto" or "X-Forwarded-Proto: https" -> ("HTTP_X_FORWARDED_PROTO", "https").
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    header, _, value = raw.partition(":")
    header, value = header.strip(), value.strip() or "https"
    if not re.fullmatch(r"[A-Za-z0-9-]+", header) or not re.fullmatch(r"[\x21-\x7e]+", value):
        raise ImproperlyConfigured(
            f"{name}: expected a header name such as X-Forwarded-Proto, optionally followed by"
            f" ': https'; got {raw!r}"
        )
    return "HTTP_" + header.upper().replace("-", "_"), value


def env_database(name: str, default: str) -> dict:
    raw = os.environ.get(name) or default
    scheme = urlparse(raw).scheme
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(
            f"{name}: expected sqlite:///path or postgres://user@host:port/name, got {raw!r}"
        )
    try:
        config = dj_database_url.parse(raw, conn_max_age=60, conn_health_checks=True)
    except Exception as exc:  # dj_database_url raises several types for malformed URLs
        raise ImproperlyConfigured(f"{name}: cannot parse {raw!r}: {exc}") from None
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{name}: no database name in {raw!r}")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Several processes (web, workers) share the file: wait for locks instead of failing.
        config["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
        config["CONN_MAX_AGE"] = 0
    return config


def env_redis_url(name: str, default: str) -> str:
    raw = os.environ.get(name) or default
    parsed = urlparse(raw)
    if parsed.scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(
            f"{name}: expected redis://host:port/db, rediss://... or unix:///path, got {raw!r}"
        )
    if parsed.scheme != "unix":
        try:
            parsed.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ImproperlyConfigured(f"{name}: bad port in {raw!r}") from None
        if not parsed.hostname:
            raise ImproperlyConfigured(f"{name}: no host in {raw!r}")
        db = parsed.path.lstrip("/")
        if db and not db.isdigit():
            raise ImproperlyConfigured(f"{name}: database must be a number, got {db!r} in {raw!r}")
    elif not parsed.path:
        raise ImproperlyConfigured(f"{name}: no socket path in {raw!r}")
    return raw


def env_token(name: str, min_length: int) -> str:
    """A shared secret such as a bearer token: empty means none; else long enough, and
    printable ASCII without spaces, as an Authorization header can carry it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ""
    if len(raw) < min_length:
        raise ImproperlyConfigured(f"{name}: must be at least {min_length} characters long")
    if not re.fullmatch(r"[\x21-\x7e]+", raw):
        raise ImproperlyConfigured(f"{name}: only printable ASCII without spaces")
    return raw


def env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated addresses or networks (10.0.0.0/8, 2001:db8::/32, 192.0.2.7); empty
    means none. A network with host bits set (10.0.0.1/8) is refused as a likely typo."""
    raw = os.environ.get(name, "")
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {exc}") from None
    return networks


def env_audit_checkpoint_key(name: str, file_name: str, min_length: int) -> tuple[str, str]:
    """The key that signs audit checkpoints, given as itself (`name`) or as the path of a file
    holding it (`file_name`): at most one of them. The file is read when the key is used
    (portal/audit.py), so only the process that runs verify_audit needs to read it."""
    raw, path = os.environ.get(name, ""), os.environ.get(file_name, "").strip()
    if raw and path:
        raise ImproperlyConfigured(f"{name}: set either {name} or {file_name}, not both")
    if raw and len(raw) < min_length:
        raise ImproperlyConfigured(f"{name}: must be at least {min_length} characters long")
    return raw, path


def secret_key(name: str, debug: bool, data_dir: Path) -> str:
    """SECRET_KEY from the environment; in DEBUG, generated once into the data folder."""
    raw = os.environ.get(name)
    if raw:
        if len(raw) < 32:
            raise ImproperlyConfigured(f"{name}: must be at least 32 characters long")
        return raw
    if not debug:
        raise ImproperlyConfigured(f"{name}: required when DEBUG is off")
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()
