"""The registry of operation kinds (composer/kinds/): what the machinery asks of a kind, the
worked example of docs/adding-an-operation-kind.md (Reset) end to end, and the system actor.
"""

import re
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from audit.labels import action_name
from audit.models import AuditEvent
from composer import kinds, services, steps
from composer.kinds.base import OperationKind
from composer.models import Operation
from pools.models import Desktop
from pools.states import DesktopState
from tests.factories import requested_pool

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
Status = Operation.Status


@pytest.fixture
def pool(users, lab, run_jobs):
    pool = requested_pool(users["admin"], lab, "Kinds", "KND-{n}", 3, persistent_disk_mb=1024)
    run_jobs()
    assert set(pool.desktops.values_list("state", flat=True)) == {DesktopState.AVAILABLE}
    return pool


def test_every_kind_has_named_steps_from_the_step_library():
    for kind in kinds.all_kinds():
        names = [name for name, _ in kind.steps]
        assert names, kind
        assert len(names) == len(set(names)), f"{kind.name}: a step name twice"
        for name, step in kind.steps:
            assert getattr(steps, step.__name__) is step, f"{kind.name}.{name} not in steps.py"
        assert kind.limit_class in (kinds.PROVISIONING, kinds.MAINTENANCE)
        assert kind.planned == bool(kind.plan_template), kind
        # Every kind is named in the audit log's words, not as its identifier.
        assert action_name(kind.name) == (kind.audit_label or kind.label)


def test_operation_kind_choices_come_from_the_registry():
    field = Operation._meta.get_field("kind")
    assert [value for value, _ in field.choices] == [k.name for k in kinds.all_kinds()]
    assert Operation(kind="logoff").get_kind_display() == "Log off"
    assert Operation(kind="reset").spec is kinds.get("reset")


def test_a_second_kind_of_the_same_name_is_refused():
    class Impostor(OperationKind):
        name = "refresh"
        label = "Not a refresh"

    with pytest.raises(ValueError, match="two operation kinds"):
        kinds.register(Impostor)
    assert type(kinds.get("refresh")).__name__ == "Refresh"


def test_an_unknown_kind_is_refused_by_the_service_and_a_404_on_the_page(client, users, pool):
    with pytest.raises(kinds.UnknownKind):
        services.request_operation(users["admin"], pool, "defragment")
    client.force_login(users["admin"])
    assert client.get(reverse("pools:operate", args=[pool.pk, "defragment"])).status_code == 404
    # A kind that is not offered on the pool page (attach_disk) is not reachable there either.
    assert client.get(reverse("pools:operate", args=[pool.pk, "attach_disk"])).status_code == 404
    assert not Operation.objects.exclude(kind="provision").exists()


def test_reset_is_offered_on_the_pool_page_and_to_helpdesk(client, users, pool):
    client.force_login(users["admin"])
    page = client.get(pool.get_absolute_url()).content.decode()
    url = reverse("pools:operate", args=[pool.pk, "reset"])
    assert re.search(rf'class="button danger" href="{re.escape(url)}">Reset<', page)

    client.force_login(users["helpdesk"])
    found = client.get(reverse("helpdesk"), {"q": "KND-2"}).content.decode()
    desktop = Desktop.objects.get(name="KND-2")
    assert reverse("helpdesk_confirm", args=[desktop.pk, "reset"]) in found
    confirm = client.get(reverse("helpdesk_confirm", args=[desktop.pk, "reset"]))
    assert "Like pulling the plug" in confirm.content.decode()


def test_helpdesk_resets_a_hung_desktop_at_the_hypervisor(client, users, lab, pool, run_jobs):
    """The worked example end to end: a helpdesk reset of one desktop is urgent, powers the
    VM off and on at the hypervisor (no guest shutdown or restart), leaves the persistent disk
    and the checkpoint alone, and the audit log names it."""
    desktop = Desktop.objects.get(name="KND-2")
    checkpoint = desktop.checkpoint
    before = len(lab.sim.call_log())
    client.force_login(users["helpdesk"])
    answer = client.post(
        reverse("helpdesk_confirm", args=[desktop.pk, "reset"]), {"message": "", "q": "KND"}
    )
    assert answer.status_code == 302
    operation = Operation.objects.get(kind="reset")
    assert operation.urgent and operation.forces_logoff
    run_jobs()

    operation.refresh_from_db()
    assert operation.status == Status.SUCCEEDED
    calls = [name for name, target in lab.sim.call_log()[before:] if target == "KND-2"]
    assert "power_off" in calls and "power_on" in calls
    assert calls.index("power_off") < calls.index("power_on")
    assert "shutdown" not in calls and "restart" not in calls and "revert" not in calls
    desktop.refresh_from_db()
    assert desktop.state == DesktopState.AVAILABLE and desktop.checkpoint == checkpoint
    assert desktop.disks.count() == 1
    outcomes = list(
        AuditEvent.objects.filter(action="reset")
        .order_by("pk")
        .values_list("outcome", "actor_name")
    )
    assert outcomes == [("requested", "hal"), ("succeeded", "hal")]


def test_helpdesk_may_not_reset_more_than_one_desktop(users, pool):
    with pytest.raises(PermissionDenied):
        services.request_operation(users["helpdesk"], pool, "reset", None)
    with pytest.raises(PermissionDenied):
        services.request_operation(users["helpdesk"], pool, "reset", list(pool.desktops.all()))
    denied = AuditEvent.objects.filter(action="reset", outcome="denied")
    assert denied.count() == 2 and not Operation.objects.filter(kind="reset").exists()


def test_work_the_portal_starts_itself_is_audited_as_the_system_actor(client, users, pool):
    system = services.system_actor()
    assert services.system_actor() == system  # one, made once
    desktop = Desktop.objects.get(name="KND-1")
    operation = services.request_operation(system, pool, "refresh", [desktop])
    event = AuditEvent.objects.get(operation=operation, outcome="requested")
    assert (event.actor_name, event.role) == ("(system)", "system")
    # Nobody can sign in as it.
    assert not system.is_active and not system.has_usable_password()
    login = client.post(reverse("login"), {"username": "(system)", "password": ""})
    assert login.status_code == 200 and "_auth_user_id" not in client.session


# Comparisons of an operation's kind: `kind == ...`, `.kind in (...)`, `kind != "x"`, or a
# kind's name compared as a string literal.
KIND_NAMES = "|".join(k.name for k in kinds.all_kinds())
KIND_COMPARISON = re.compile(
    rf"""kind\s*(==|!=|\bin\b|\bnot in\b)|(==|!=)\s*["']({KIND_NAMES})["']"""
)
# Other things called kinds: an endpoint check's (test or sync) and, in the drivers, what a
# VM is to the portal (parent, replica, desktop). Drivers know nothing of operations.
OTHER_KINDS = ("check.kind", "vm.kind", "EndpointCheck.Kind")


def test_only_the_kinds_compare_kinds():
    """Everything about a kind lives in its module: the machinery asks the kind."""
    offenders = []
    for folder in ("composer", "pools", "portal", "templates"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", ".html") or "migrations" in path.parts:
                continue
            if path.is_relative_to(ROOT / "composer" / "kinds"):
                continue
            if path.is_relative_to(ROOT / "composer" / "drivers"):
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#")[0]
                if any(other in code for other in OTHER_KINDS) or "for kind in" in code:
                    continue
                if KIND_COMPARISON.search(code):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
