"""Directory sign-in tests against a real OpenLDAP server (tests/directory/slapd.py).

They run whenever Debian's slapd and ldap-utils and the "ldap" extra (django-auth-ldap) are
installed; with REQUIRE_LDAP=1 (CI) a missing piece fails the run instead of skipping it.
"""

import os
import shutil
import socket
import threading

import pytest

from tests.directory import slapd as directory


def pytest_collection_modifyitems(config, items):
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("REQUIRE_LDAP") == "1":
        raise pytest.UsageError(f"REQUIRE_LDAP=1 but {reason}")
    for item in items:
        if "tests/directory/" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=reason))


def _missing() -> str | None:
    for program in (directory.SLAPD, directory.SLAPADD, directory.LDAPMODIFY, directory.OPENSSL):
        if not shutil.which(program):
            return f"directory tests need {program} (Debian's slapd, ldap-utils and openssl)"
    try:
        import django_auth_ldap  # noqa: F401
    except ImportError:
        return "directory tests need django-auth-ldap: pip install '.[ldap]'"
    return None


@pytest.fixture(scope="session")
def slapd_server(tmp_path_factory):
    server = directory.Slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def slapd(slapd_server):
    """The running server; a test that stops it gets it started again."""
    yield slapd_server
    if slapd_server.process is None:
        slapd_server.start()


@pytest.fixture
def ldap_env(slapd):
    """The LDAP_* variables an operator would set for the test directory."""
    return {
        "LDAP_SERVER_URI": slapd.uri,
        "LDAP_BIND_DN": directory.SERVICE_DN,
        "LDAP_BIND_PASSWORD": directory.SERVICE_PASSWORD,
        "LDAP_USER_SEARCH_BASE": directory.BASE,
        "LDAP_GROUP_SEARCH_BASE": directory.GROUPS,
        "LDAP_ADMINISTRATORS_GROUP": directory.ADMINISTRATORS_DN,
        # Another spelling of the same DN (spaces, case) must still match.
        "LDAP_HELPDESK_GROUP": directory.HELPDESK_DN.replace(",", ", ").upper(),
        "LDAP_AUDITORS_GROUP": directory.AUDITORS_DN,
        "LDAP_TIMEOUT": "3",
    }


@pytest.fixture
def directory_sign_in(db, settings, monkeypatch, ldap_env):
    """Directory sign-in on, configured from ldap_env through portal/directory_settings.py as
    settings.py does at start. Returns a function that applies changed variables."""
    from portal import directory_settings

    backends = list(settings.AUTHENTICATION_BACKENDS)

    def configure(**changes):
        for name, value in {**ldap_env, **changes}.items():
            monkeypatch.setenv(name, value)
        for name, value in directory_settings.from_environment().items():
            setattr(settings, name, value)
        settings.AUTHENTICATION_BACKENDS = [backends[0], directory_settings.BACKEND, *backends[1:]]

    configure()
    return configure


class StalledServer:
    """Accepts connections on a loopback port and never answers: a directory that hangs."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", directory.free_port()))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self):
        self.listener.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def stalled_server():
    server = StalledServer()
    yield server
    server.close()
