"""The LDAP_* variables (portal/directory_settings.py): a bad value stops the portal at start
with a message naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal import directory_settings

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "LDAP_SERVER_URI": "ldaps://dc1.corp.example:636 ldaps://dc2.corp.example:636",
    "LDAP_BIND_DN": "CN=svc-portal,OU=Service Accounts,DC=corp,DC=example",
    "LDAP_BIND_PASSWORD": "secret",
    "LDAP_USER_SEARCH_BASE": "DC=corp,DC=example",
    "LDAP_USER_FILTER": "(sAMAccountName=%(user)s)",
    "LDAP_GROUP_SEARCH_BASE": "OU=Groups,DC=corp,DC=example",
    "LDAP_GROUP_TYPE": "activeDirectory",
    "LDAP_ADMINISTRATORS_GROUP": "CN=Portal Admins,OU=Groups,DC=corp,DC=example",
    "LDAP_CA_FILE": __file__,  # any readable file stands for a CA bundle here
    "LDAP_TIMEOUT": "4",
}


@pytest.fixture
def environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("LDAP_"):
            monkeypatch.delenv(name)

    def apply(**values):
        for name, value in {**GOOD, **values}.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)

    return apply


def test_active_directory_settings(environment):
    import ldap
    from django_auth_ldap.config import NestedActiveDirectoryGroupType

    environment()
    found = directory_settings.from_environment()
    assert found["AUTH_LDAP_SERVER_URI"] == GOOD["LDAP_SERVER_URI"]
    assert found["AUTH_LDAP_USER_SEARCH"].filterstr == "(sAMAccountName=%(user)s)"
    assert found["AUTH_LDAP_GROUP_SEARCH"].filterstr == "(objectClass=group)"
    assert isinstance(found["AUTH_LDAP_GROUP_TYPE"], NestedActiveDirectoryGroupType)
    assert found["LDAP_ROLE_GROUPS"] == {"Administrators": GOOD["LDAP_ADMINISTRATORS_GROUP"]}
    options = found["AUTH_LDAP_CONNECTION_OPTIONS"]
    assert options[ldap.OPT_NETWORK_TIMEOUT] == options[ldap.OPT_TIMEOUT] == 4.0
    assert options[ldap.OPT_X_TLS_CACERTFILE] == __file__
    assert options[ldap.OPT_X_TLS_REQUIRE_CERT] == ldap.OPT_X_TLS_DEMAND
    assert list(options)[-1] == ldap.OPT_X_TLS_NEWCTX  # after the TLS options it applies


def test_the_bind_password_can_come_from_a_file(environment, tmp_path):
    secret = tmp_path / "bind-password"
    secret.write_text("from-a-file\n")
    environment(LDAP_BIND_PASSWORD=None, LDAP_BIND_PASSWORD_FILE=str(secret))
    assert directory_settings.from_environment()["AUTH_LDAP_BIND_PASSWORD"] == "from-a-file"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"LDAP_SERVER_URI": "dc1.corp.example"}, "LDAP_SERVER_URI"),
        ({"LDAP_SERVER_URI": "https://dc1.corp.example"}, "LDAP_SERVER_URI"),
        ({"LDAP_START_TLS": "true"}, "LDAP_START_TLS"),  # with ldaps://
        ({"LDAP_START_TLS": "maybe"}, "LDAP_START_TLS"),
        ({"LDAP_BIND_DN": "svc-portal"}, "LDAP_BIND_DN"),
        ({"LDAP_BIND_DN": None}, "LDAP_BIND_PASSWORD"),
        ({"LDAP_BIND_PASSWORD_FILE": "/nonexistent/password"}, "LDAP_BIND_PASSWORD"),
        (
            {"LDAP_BIND_PASSWORD": None, "LDAP_BIND_PASSWORD_FILE": "/nonexistent"},
            "LDAP_BIND_PASSWORD_FILE",
        ),
        ({"LDAP_USER_SEARCH_BASE": None}, "LDAP_USER_SEARCH_BASE"),
        ({"LDAP_USER_FILTER": "sAMAccountName=%(user)s"}, "LDAP_USER_FILTER"),
        ({"LDAP_USER_FILTER": "(uid=%(name)s)"}, "LDAP_USER_FILTER"),
        ({"LDAP_USER_FILTER": "(&(uid=%(user)s)(x=50%))"}, "LDAP_USER_FILTER"),
        ({"LDAP_GROUP_SEARCH_BASE": None}, "LDAP_GROUP_SEARCH_BASE"),
        ({"LDAP_GROUP_TYPE": "posix"}, "LDAP_GROUP_TYPE"),
        ({"LDAP_ADMINISTRATORS_GROUP": "Portal Admins"}, "LDAP_ADMINISTRATORS_GROUP"),
        ({"LDAP_ADMINISTRATORS_GROUP": None}, "LDAP_ADMINISTRATORS_GROUP"),  # no group at all
        ({"LDAP_CA_FILE": "/nonexistent/ca.pem"}, "LDAP_CA_FILE"),
        ({"LDAP_TIMEOUT": "soon"}, "LDAP_TIMEOUT"),
        ({"LDAP_TIMEOUT": "0"}, "LDAP_TIMEOUT"),
    ],
)
def test_a_bad_value_names_its_variable(environment, changes, named):
    environment(**changes)
    with pytest.raises(ImproperlyConfigured) as refused:
        directory_settings.from_environment()
    assert str(refused.value).startswith(f"{named}: ")


def test_without_django_auth_ldap_it_says_what_to_install(environment, monkeypatch):
    environment()
    monkeypatch.setitem(sys.modules, "django_auth_ldap", None)  # as if not installed
    with pytest.raises(ImproperlyConfigured, match=r"pip install '\.\[ldap\]'"):
        directory_settings.from_environment()


def test_the_portal_does_not_start_with_a_bad_value(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LDAP_")},
        **GOOD,
        "LDAP_GROUP_TYPE": "posix",
        "PORTAL_DATA_DIR": str(tmp_path),
    }
    run = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "Configuration error: LDAP_GROUP_TYPE: expected one of" in run.stderr


def test_directory_sign_in_is_off_without_a_server_uri(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LDAP_")}
    code = "from django.conf import settings; print(settings.AUTHENTICATION_BACKENDS)"
    run = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**env, "PORTAL_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "DirectoryBackend" not in run.stdout
    run = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**env, **GOOD, "PORTAL_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1].split() == [
        "['axes.backends.AxesStandaloneBackend',",
        "'portal.directory.DirectoryBackend',",
        "'django.contrib.auth.backends.ModelBackend']",
    ]
