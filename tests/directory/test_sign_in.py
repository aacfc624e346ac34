"""Staff sign in on the real sign-in page with their directory account (portal/directory.py),
against a real slapd (tests/directory/slapd.py)."""

import logging
import time

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Group, User
from django.urls import reverse

from audit.actors import role_of
from audit.models import AuditEvent
from portal.roles import ADMINISTRATORS, AUDITORS, HELPDESK
from tests.directory import slapd as directory

DID_NOT_MATCH = "Your user name and password did not match."
UNREACHABLE = (
    "The directory could not be reached, so directory accounts cannot sign in right now; "
    "local accounts still work."
)
NO_ROLE = "Your directory account is in none of the portal&#x27;s groups, so it cannot sign in."
LOCKED_OUT = "Too many failed sign-in attempts. Try again in 15 minutes"


def sign_in(client, username, password=directory.PASSWORD):
    """POST the sign-in page as a browser would, following to the dashboard on success."""
    return client.post(reverse("login"), {"username": username, "password": password}, follow=True)


def signed_in_as(response) -> User | None:
    """The user the dashboard (or the page it sends their role to) was shown to, or None if
    the sign-in page came back."""
    if not response.redirect_chain or response.redirect_chain[0][0] != reverse("dashboard"):
        return None
    assert response.status_code == 200
    user = response.context["user"]
    assert user.is_authenticated
    return user


def role_groups(user) -> set[str]:
    return set(
        user.groups.filter(name__in=[ADMINISTRATORS, HELPDESK, AUDITORS]).values_list(
            "name", flat=True
        )
    )


def last_sign_in_event() -> AuditEvent:
    return AuditEvent.objects.filter(action="login").latest("id")


@pytest.mark.parametrize(
    ("username", "role"),
    [
        ("alice", ADMINISTRATORS),
        ("harry", HELPDESK),
        ("carl", AUDITORS),  # in ou=contractors
        ("nina", HELPDESK),  # only through cn=operators, a member of portal-helpdesk
    ],
)
def test_each_directory_group_gives_its_role(client, directory_sign_in, username, role):
    user = signed_in_as(sign_in(client, username))
    assert user is not None and user.get_username() == username
    user = User.objects.get(username=username)
    assert role_groups(user) == {role}
    assert role_of(user) == role
    # Copied from the directory; no local password, and no Django admin.
    assert (user.first_name, user.last_name, user.email) == (
        username.title(),
        "Example",
        f"{username}@example.test",
    )
    assert not user.has_usable_password()
    assert not (user.is_staff or user.is_superuser)


def test_a_wrong_password_and_an_unknown_user_are_refused_alike(client, directory_sign_in):
    for username, password in (("alice", "not-her-password"), ("nosuchperson", "anything")):
        response = sign_in(client, username, password)
        assert signed_in_as(response) is None
        assert DID_NOT_MATCH in response.content.decode()
        assert last_sign_in_event().message == "Wrong user name or password."
    assert not User.objects.exists()


def test_a_user_in_no_role_group_is_refused_and_told_why(client, directory_sign_in):
    response = sign_in(client, "nobody")
    assert signed_in_as(response) is None
    assert NO_ROLE in response.content.decode()
    assert DID_NOT_MATCH not in response.content.decode()
    event = last_sign_in_event()
    assert (event.target_name, event.outcome) == ("nobody", "denied")
    assert event.message == "The directory account is in none of the portal's role groups."
    assert not User.objects.filter(username="nobody").exists()


def test_an_account_the_directory_locked_is_refused(client, directory_sign_in):
    # dora is in the administrators' group, but slapd's ppolicy refuses her bind.
    response = sign_in(client, "dora")
    assert signed_in_as(response) is None
    assert DID_NOT_MATCH in response.content.decode()
    assert not User.objects.filter(username="dora").exists()


def test_group_changes_in_the_directory_count_at_the_next_sign_in(client, directory_sign_in, slapd):
    assert signed_in_as(sign_in(client, "mover")) is not None
    mover = User.objects.get(username="mover")
    assert role_groups(mover) == {HELPDESK}
    night_shift = Group.objects.create(name="Night shift")  # not a role: left alone
    mover.groups.add(night_shift)
    client.logout()
    try:
        # Moved from helpdesk to auditors: the new role only.
        slapd.move_member("mover", directory.HELPDESK_DN, directory.AUDITORS_DN)
        assert signed_in_as(sign_in(client, "mover")) is not None
        assert role_groups(mover) == {AUDITORS}
        client.logout()

        # In two role groups: both, as a local user in two groups; the audit log shows the
        # more powerful.
        slapd.move_member("mover", None, directory.ADMINISTRATORS_DN)
        assert signed_in_as(sign_in(client, "mover")) is not None
        assert role_groups(mover) == {ADMINISTRATORS, AUDITORS}
        assert role_of(mover) == ADMINISTRATORS
        client.logout()

        # Out of every role group: refused, and the roles are gone (API tokens too).
        slapd.move_member("mover", directory.ADMINISTRATORS_DN, None)
        slapd.move_member("mover", directory.AUDITORS_DN, None)
        response = sign_in(client, "mover")
        assert signed_in_as(response) is None
        assert NO_ROLE in response.content.decode()
        assert role_groups(mover) == set()
        assert set(mover.groups.values_list("name", flat=True)) == {"Night shift"}
    finally:
        slapd.modify(
            f"dn: {directory.HELPDESK_DN}\nchangetype: modify\nadd: member\n"
            f"member: {directory.person_dn('mover')}\n"
        )


def _one_warning(caplog) -> logging.LogRecord:
    """The one line logged about the directory (axes logs every failed sign-in, as for local
    accounts), without a traceback."""
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and not r.name.startswith("axes")
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].name == "portal.directory"
    assert warnings[0].exc_info is None
    return warnings[0]


def test_directory_down_says_so_and_local_accounts_still_sign_in(
    client, directory_sign_in, slapd, users, caplog
):
    slapd.stop()
    caplog.set_level(logging.WARNING)
    response = sign_in(client, "alice")
    assert signed_in_as(response) is None
    assert UNREACHABLE in response.content.decode()
    assert DID_NOT_MATCH not in response.content.decode()
    assert last_sign_in_event().message == "The directory could not be reached."
    assert "SERVER_DOWN" in _one_warning(caplog).getMessage()

    # The break-glass administrator is a local account.
    admin = signed_in_as(sign_in(client, "ada", "pw-ada"))
    assert admin is not None and role_of(admin) == ADMINISTRATORS
    client.logout()

    # And back when the directory is.
    slapd.start()
    assert signed_in_as(sign_in(client, "alice")) is not None


def test_a_port_with_nothing_listening_says_the_directory_is_unreachable(client, directory_sign_in):
    directory_sign_in(LDAP_SERVER_URI=f"ldap://127.0.0.1:{directory.free_port()}")
    response = sign_in(client, "alice")
    assert signed_in_as(response) is None
    assert UNREACHABLE in response.content.decode()


def test_a_stalled_directory_answers_within_the_timeout(
    client, directory_sign_in, stalled_server, users, caplog
):
    directory_sign_in(LDAP_SERVER_URI=f"ldap://127.0.0.1:{stalled_server.port}", LDAP_TIMEOUT="2")
    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    response = sign_in(client, "alice")
    elapsed = time.monotonic() - started
    assert signed_in_as(response) is None
    assert UNREACHABLE in response.content.decode()
    assert "TIMEOUT" in _one_warning(caplog).getMessage()
    # It waited for the directory (a timeout, not a refusal), then gave up: a loaded machine
    # may add some seconds, never the minutes of an unbounded wait.
    assert 1.5 <= elapsed < 20
    assert signed_in_as(sign_in(client, "ada", "pw-ada")) is not None


def test_failed_directory_sign_ins_lock_the_user_out(client, directory_sign_in):
    for _ in range(4):
        response = sign_in(client, "alice", "not-her-password")
        assert response.status_code == 200 and DID_NOT_MATCH in response.content.decode()
    fifth = sign_in(client, "alice", "not-her-password")
    assert fifth.status_code == 429
    assert LOCKED_OUT in fifth.content.decode()
    # Even the right directory password is refused now.
    locked = sign_in(client, "alice")
    assert locked.status_code == 429 and signed_in_as(locked) is None
    assert AccessAttempt.objects.get(username="alice").failures_since_start >= 5
    events = AuditEvent.objects.filter(action="login", target_name="alice").order_by("id")
    assert [e.parameters["locked_out"] for e in events] == [False] * 4 + [True, True]


def test_a_directory_account_never_takes_over_a_local_one(client, directory_sign_in, caplog):
    # carol is in the directory's administrators group; a local carol (an auditor) has her
    # own password.
    carol = User.objects.create_user("carol", password="local-pass-1", first_name="Local")
    carol.groups.add(Group.objects.get(name=AUDITORS))
    caplog.set_level(logging.WARNING)
    response = sign_in(client, "carol")
    assert signed_in_as(response) is None
    assert DID_NOT_MATCH in response.content.decode()
    assert "never takes one over" in _one_warning(caplog).getMessage()
    carol.refresh_from_db()
    assert (carol.first_name, role_groups(carol)) == ("Local", {AUDITORS})
    assert carol.has_usable_password()
    # Her local password still signs her in, as an auditor.
    user = signed_in_as(sign_in(client, "carol", "local-pass-1"))
    assert user is not None and role_of(user) == AUDITORS


@pytest.mark.parametrize("transport", ["ldaps", "starttls"])
def test_tls_to_the_directory_checks_its_certificate(client, directory_sign_in, slapd, transport):
    tls = (
        {"LDAP_SERVER_URI": slapd.ldaps_uri}
        if transport == "ldaps"
        else {"LDAP_SERVER_URI": slapd.uri, "LDAP_START_TLS": "true"}
    )
    directory_sign_in(**tls, LDAP_CA_FILE=str(slapd.ca_file))
    assert signed_in_as(sign_in(client, "alice")) is not None
    client.logout()

    # A certificate the given CA did not sign: no sign-in, and the page says why.
    directory_sign_in(**tls, LDAP_CA_FILE=str(slapd.other_ca_file))
    response = sign_in(client, "alice")
    assert signed_in_as(response) is None
    assert UNREACHABLE in response.content.decode()
