"""Directory sign-in (Active Directory / LDAP) settings, read from the LDAP_* variables.

Directory sign-in is on only when LDAP_SERVER_URI is set; then `from_environment()` checks
every LDAP_* variable (a bad value stops the portal at start, naming the variable) and
returns django-auth-ldap's AUTH_LDAP_* settings plus LDAP_ROLE_GROUPS, which portal/directory.py
uses to map directory groups to our roles. README.md ("Directory sign-in") documents them.

django-auth-ldap and python-ldap are imported only when directory sign-in is on: they are an
optional extra (`pip install '.[ldap]'`), since python-ldap builds against Debian's
libldap2-dev and libsasl2-dev.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from audit.actors import ADMINISTRATORS, AUDITORS, HELPDESK
from portal.env import env_bool, env_float

BACKEND = "portal.directory.DirectoryBackend"

# Our role -> the variable naming its directory group.
ROLE_VARIABLES = {
    ADMINISTRATORS: "LDAP_ADMINISTRATORS_GROUP",
    HELPDESK: "LDAP_HELPDESK_GROUP",
    AUDITORS: "LDAP_AUDITORS_GROUP",
}

# LDAP_GROUP_TYPE -> (django-auth-ldap's nested group type, the objectClass of its groups).
GROUP_TYPES = {
    "groupOfNames": ("NestedGroupOfNamesType", "groupOfNames"),
    "groupOfUniqueNames": ("NestedGroupOfUniqueNamesType", "groupOfUniqueNames"),
    "activeDirectory": ("NestedActiveDirectoryGroupType", "group"),
}

# What the portal copies from the directory at every sign-in (same names in AD and OpenLDAP).
USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}


def enabled() -> bool:
    return bool(os.environ.get("LDAP_SERVER_URI", "").strip())


def from_environment() -> dict:
    """AUTH_LDAP_* settings and LDAP_ROLE_GROUPS; call only when enabled()."""
    try:
        import ldap
        from django_auth_ldap import config
    except ImportError:
        raise ImproperlyConfigured(
            "LDAP_SERVER_URI is set, but directory sign-in needs django-auth-ldap: run "
            "pip install '.[ldap]' (python-ldap builds against Debian's libldap2-dev and "
            "libsasl2-dev), or unset LDAP_SERVER_URI."
        ) from None

    uri = _server_uri("LDAP_SERVER_URI")
    start_tls = env_bool("LDAP_START_TLS", False)
    if start_tls and "ldaps://" in uri:
        raise ImproperlyConfigured(
            "LDAP_START_TLS: StartTLS is for ldap:// URIs; an ldaps:// URI is already TLS"
        )
    bind_dn = _dn(ldap, "LDAP_BIND_DN", required=False)
    bind_password = _bind_password("LDAP_BIND_PASSWORD", "LDAP_BIND_PASSWORD_FILE")
    if bind_password and not bind_dn:
        raise ImproperlyConfigured("LDAP_BIND_PASSWORD: set LDAP_BIND_DN too")
    user_base = _dn(ldap, "LDAP_USER_SEARCH_BASE", required=True)
    user_filter = _user_filter("LDAP_USER_FILTER", "(uid=%(user)s)")
    group_base = _dn(ldap, "LDAP_GROUP_SEARCH_BASE", required=True)
    group_type_name, group_class = _group_type("LDAP_GROUP_TYPE")
    role_groups = {
        role: dn
        for role, variable in ROLE_VARIABLES.items()
        if (dn := _dn(ldap, variable, required=False))
    }
    if not role_groups:
        raise ImproperlyConfigured(
            "LDAP_ADMINISTRATORS_GROUP: name the directory group (DN) of at least one role "
            "(LDAP_ADMINISTRATORS_GROUP, LDAP_HELPDESK_GROUP, LDAP_AUDITORS_GROUP); a user in "
            "none of them cannot sign in"
        )
    timeout = env_float("LDAP_TIMEOUT", 5.0, minimum=0.5)

    # Connect and answer timeouts, so a stalled directory cannot hold the sign-in page;
    # no referral chasing (AD answers searches at a domain's root with referrals that
    # python-ldap would follow anonymously).
    options = {
        ldap.OPT_NETWORK_TIMEOUT: timeout,
        ldap.OPT_TIMEOUT: timeout,
        ldap.OPT_REFERRALS: 0,
    }
    ca_file = os.environ.get("LDAP_CA_FILE", "").strip()
    if ca_file:
        if not Path(ca_file).is_file():
            raise ImproperlyConfigured(f"LDAP_CA_FILE: no such file: {ca_file!r}")
        options[ldap.OPT_X_TLS_CACERTFILE] = ca_file
    if ca_file or start_tls or "ldaps://" in uri:
        options[ldap.OPT_X_TLS_REQUIRE_CERT] = ldap.OPT_X_TLS_DEMAND
        # Last: a new TLS context takes the options above (python-ldap applies them in order).
        options[ldap.OPT_X_TLS_NEWCTX] = 0

    return {
        "AUTH_LDAP_SERVER_URI": uri,
        "AUTH_LDAP_BIND_DN": bind_dn,
        "AUTH_LDAP_BIND_PASSWORD": bind_password,
        "AUTH_LDAP_START_TLS": start_tls,
        "AUTH_LDAP_CONNECTION_OPTIONS": options,
        "AUTH_LDAP_USER_SEARCH": config.LDAPSearch(user_base, ldap.SCOPE_SUBTREE, user_filter),
        "AUTH_LDAP_GROUP_SEARCH": config.LDAPSearch(
            group_base, ldap.SCOPE_SUBTREE, f"(objectClass={group_class})"
        ),
        "AUTH_LDAP_GROUP_TYPE": getattr(config, group_type_name)(),
        "AUTH_LDAP_USER_ATTR_MAP": USER_ATTR_MAP,
        # Names, groups and roles are refreshed from the directory at every sign-in, and
        # nothing is cached between sign-ins: a change in the directory counts at once.
        "AUTH_LDAP_ALWAYS_UPDATE_USER": True,
        "AUTH_LDAP_CACHE_TIMEOUT": 0,
        # Permissions come from our role groups (ModelBackend), never from directory groups.
        "AUTH_LDAP_FIND_GROUP_PERMS": False,
        "LDAP_ROLE_GROUPS": role_groups,
    }


def _server_uri(name: str) -> str:
    """One or more ldap:// or ldaps:// URIs, separated by spaces or commas; libldap tries
    them in order."""
    raw = os.environ.get(name, "")
    uris = [item for item in re.split(r"[\s,]+", raw.strip()) if item]
    for uri in uris:
        if not re.fullmatch(r"ldaps?://[^/\s]+/?", uri):
            raise ImproperlyConfigured(
                f"{name}: expected ldap://host[:port] or ldaps://host[:port] (several "
                f"separated by spaces), got {uri!r}"
            )
    return " ".join(uris)


def _dn(ldap, name: str, required: bool) -> str:
    raw = os.environ.get(name, "").strip()
    if not raw:
        if required:
            raise ImproperlyConfigured(f"{name}: required when LDAP_SERVER_URI is set")
        return ""
    if not ldap.dn.is_dn(raw):
        raise ImproperlyConfigured(
            f"{name}: expected a distinguished name like ou=people,dc=example,dc=com, got {raw!r}"
        )
    return raw


def _bind_password(name: str, file_name: str) -> str:
    raw, path = os.environ.get(name, ""), os.environ.get(file_name, "").strip()
    if raw and path:
        raise ImproperlyConfigured(f"{name}: set either {name} or {file_name}, not both")
    if not path:
        return raw
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise ImproperlyConfigured(f"{file_name}: cannot read {path!r}: {exc.strerror}") from None


def _user_filter(name: str, default: str) -> str:
    raw = os.environ.get(name, "").strip() or default
    balanced = raw.count("(") == raw.count(")")
    if not (raw.startswith("(") and raw.endswith(")") and balanced and "%(user)s" in raw):
        raise ImproperlyConfigured(
            f"{name}: expected an LDAP filter holding %(user)s, such as (uid=%(user)s) or "
            f"(sAMAccountName=%(user)s); got {raw!r}"
        )
    try:
        raw % {"user": "x"}
    except (KeyError, ValueError, TypeError):
        raise ImproperlyConfigured(
            f"{name}: only %(user)s may follow a % sign (write %% for a literal one); got {raw!r}"
        ) from None
    return raw


def _group_type(name: str) -> tuple[str, str]:
    raw = os.environ.get(name, "").strip() or "groupOfNames"
    if raw not in GROUP_TYPES:
        raise ImproperlyConfigured(f"{name}: expected one of {', '.join(GROUP_TYPES)}; got {raw!r}")
    return GROUP_TYPES[raw]
