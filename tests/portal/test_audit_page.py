"""The audit log page: filters, links, bounded queries, CSV export, and who may see it."""

import csv
import io
from datetime import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from composer.models import Operation
from pools.models import Desktop, Pool

pytestmark = pytest.mark.django_db

AUDIT = reverse("audit")
EXPORT = reverse("audit_export")


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime(2026, 3, day, hour, minute))


def event(message: str, when: datetime, **fields) -> AuditEvent:
    values = {
        "actor_name": "ada",
        "role": "Administrators",
        "action": "refresh",
        "outcome": "requested",
        **fields,
    }
    return AuditEvent.objects.create(at=when, message=message, **values)


@pytest.fixture
def log(db):
    """Six events, identified by their message."""
    event("ada-refresh", at(1), target_type="pool", target_id="1", target_name="Engineering")
    event("ada-create", at(3), action="create_pool", outcome="succeeded", target_name="Sales")
    event(
        "hal-denied",
        at(5, 0, 0),
        actor_name="hal",
        role="Helpdesk",
        action="recompose",
        outcome="denied",
        target_type="pool",
        target_name="Engineering",
    )
    event(
        "hal-refresh",
        at(5, 23, 59),
        actor_name="hal",
        role="Helpdesk",
        target_type="desktop",
        target_name="ENG-004",
    )
    event("aud-denied", at(6), actor_name="aud", role="Auditors", outcome="denied")
    event("anon-denied", at(10), actor_name="anonymous", role="anonymous", outcome="denied")


def shown(client, **params) -> list[str]:
    """The messages of the rows the page shows, in order."""
    response = client.get(AUDIT, params)
    assert response.status_code == 200
    return [e.message for e in response.context["page"]]


def exported(client, **params) -> list[list[str]]:
    response = client.get(EXPORT, params)
    assert response.status_code == 200
    assert response.streaming
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def auditor(client, users):
    client.force_login(users["auditor"])
    return client


def test_newest_first_and_everything_without_filters(auditor, log):
    assert shown(auditor) == [
        "anon-denied",
        "aud-denied",
        "hal-refresh",
        "hal-denied",
        "ada-create",
        "ada-refresh",
    ]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"who": "HA"}, {"hal-denied", "hal-refresh"}),  # partial, any case
        ({"role": "Helpdesk"}, {"hal-denied", "hal-refresh"}),
        ({"role": "anonymous"}, {"anon-denied"}),
        ({"action": "create_pool"}, {"ada-create"}),
        ({"target": "engin"}, {"ada-refresh", "hal-denied"}),  # partial, on the target name
        ({"outcome": "denied"}, {"hal-denied", "aud-denied", "anon-denied"}),
        ({"outcome": "succeeded"}, {"ada-create"}),
    ],
)
def test_each_filter_narrows_the_rows(auditor, log, params, expected):
    assert set(shown(auditor, **params)) == expected


def test_filters_combine(auditor, log):
    assert shown(auditor, outcome="denied", who="hal") == ["hal-denied"]
    assert shown(auditor, outcome="denied", role="Helpdesk", target="eng") == ["hal-denied"]
    assert shown(auditor, outcome="succeeded", who="hal") == []


def test_date_range_takes_whole_days(auditor, log):
    # Both ends included, from the first to the last minute of the day.
    assert shown(auditor, date_from="2026-03-05", date_to="2026-03-05") == [
        "hal-refresh",
        "hal-denied",
    ]
    assert shown(auditor, date_from="2026-03-06") == ["anon-denied", "aud-denied"]
    assert shown(auditor, date_to="2026-03-02") == ["ada-refresh"]
    assert shown(auditor, date_from="2026-03-02", date_to="2026-03-05", who="ada") == ["ada-create"]


@pytest.mark.parametrize(
    "params, error",
    [
        ({"date_from": "2026-02-30"}, "Enter a valid date."),
        ({"date_to": "yesterday"}, "Enter a valid date."),
        ({"date_to": "9999-12-31"}, "Ensure this value is less than or equal to 9998-12-31"),
        ({"date_from": "0001-01-01"}, "Ensure this value is greater than or equal to 1900-01-01"),
        ({"date_from": "2026-03-05", "date_to": "2026-03-01"}, "The end date is before"),
        ({"outcome": "exploded"}, "Select a valid choice."),
        ({"role": "root"}, "Select a valid choice."),
        ({"action": "<script>"}, "Select a valid choice."),
        ({"who": "x" * 151}, "Ensure this value has at most 150 characters"),
    ],
)
def test_bad_filter_values_give_a_form_error_and_no_rows(auditor, log, params, error):
    response = auditor.get(AUDIT, params)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert list(response.context["page"]) == []
    assert "Correct the filters above" in response.content.decode()
    assert "Export CSV" not in response.content.decode()


def test_a_nul_byte_in_a_filter_is_refused_before_the_form(auditor, log):
    # RejectNulMiddleware answers for every page (tests/resilience/test_hostile_input.py).
    response = auditor.get(AUDIT, {"target": "a\x00b"})
    assert response.status_code == 400 and "NUL" in response.content.decode()


def test_pagination_keeps_the_filters(auditor, db):
    for i in range(105):
        event(f"denied-{i}", at(1 + i // 60, minute=i % 60), outcome="denied")
    event("other", at(2), outcome="succeeded")
    response = auditor.get(AUDIT, {"outcome": "denied", "who": "ad"})
    page = response.context["page"]
    assert page.paginator.count == 105 and len(page) == 100
    assert "outcome=denied" in response.content.decode().split('class="pager"')[1]
    second = auditor.get(AUDIT, {"outcome": "denied", "who": "ad", "page": 2})
    assert [e.message for e in second.context["page"]] == [f"denied-{i}" for i in range(4, -1, -1)]


def test_rows_link_to_their_operation_and_to_targets_that_still_exist(auditor, users, lab):
    pool = Pool.objects.create(
        name="Links",
        endpoint=lab.endpoint,
        naming_pattern="LNK-{n}",
        size=1,
        image_version=lab.v1,
    )
    desktop = Desktop.objects.create(
        pool=pool, name="LNK-1", datastore=lab.ds["ds-a"], image_version=lab.v1
    )
    operation = Operation.objects.create(
        kind="refresh", pool=pool, pool_name="Links", requested_by=users["admin"]
    )
    event("pool", at(1), target_type="pool", target_id=str(pool.pk), target_name="Links")
    event("desktop", at(2), target_type="desktop", target_id=str(desktop.pk), target_name="LNK-1")
    event("gone", at(3), target_type="pool", target_id="999999", target_name="Deleted pool")
    event("op", at(4), operation=operation)
    html = auditor.get(AUDIT).content.decode()
    assert f'<a href="{reverse("pools:detail", args=[pool.pk])}">Links</a>' in html
    assert f'<a href="{reverse("pools:desktop", args=[desktop.pk])}">LNK-1</a>' in html
    assert f'href="{reverse("composer:operation", args=[operation.pk])}"' in html
    assert "Deleted pool" in html and 'href="/pools/999999/"' not in html


def test_the_page_does_not_query_per_row(auditor, lab, users):
    pool = Pool.objects.create(
        name="Q", endpoint=lab.endpoint, naming_pattern="Q-{n}", size=1, image_version=lab.v1
    )
    operation = Operation.objects.create(
        kind="refresh", pool=pool, pool_name="Q", requested_by=users["admin"]
    )

    def add(n):
        for i in range(n):
            event(
                f"e{i}",
                at(1),
                actor=users["admin"],
                target_type="pool",
                target_id=str(pool.pk),
                target_name="Q",
                operation=operation,
                parameters={"i": i},
                ip="10.0.0.1",
                request_id="r",
            )

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert auditor.get(AUDIT).status_code == 200
        return len(captured)

    add(3)
    few = queries()
    add(60)
    assert queries() == few


def test_csv_has_exactly_the_filtered_rows_of_every_page(auditor, db):
    for i in range(130):
        event(f"denied-{i}", at(1 + i // 60, minute=i % 60), outcome="denied", ip="10.0.0.9")
    for i in range(7):
        event(f"ok-{i}", at(4), outcome="succeeded")
    rows = exported(auditor, outcome="denied")
    assert rows[0] == [
        "when",
        "who",
        "role",
        "action",
        "action code",
        "target type",
        "target",
        "outcome",
        "message",
        "details",
        "operation id",
        "request id",
        "ip",
        "hash",
    ]
    body = rows[1:]
    assert len(body) == 130
    assert [r[8] for r in body] == [f"denied-{i}" for i in range(129, -1, -1)]  # newest first
    assert {r[7] for r in body} == {"denied"}
    first = AuditEvent.objects.get(message="denied-129")
    assert body[0][0] == timezone.localtime(first.at).isoformat()
    assert body[0][12] == "10.0.0.9" and body[0][13] == first.hash
    assert len(exported(auditor, outcome="denied", date_from="2026-03-02")[1:]) == 70


def test_csv_cells_cannot_run_as_formulas(auditor, db):
    event(
        '=HYPERLINK("http://evil.example","click")',
        at(1),
        actor_name="@admin",
        target_name="+cmd|' /C calc'!A0",
        role="-2+3",
    )
    row = exported(auditor)[1]
    assert row[1] == "'@admin"
    assert row[2] == "'-2+3"
    assert row[6] == "'+cmd|' /C calc'!A0"
    assert row[8] == '\'=HYPERLINK("http://evil.example","click")'
    assert not any(cell[:1] in "=+-@" for cell in row if cell)


def test_export_is_a_dated_download_and_is_itself_recorded(auditor, users, log):
    response = auditor.get(EXPORT, {"outcome": "denied"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    today = timezone.localdate().isoformat()
    assert response["Content-Disposition"] == f'attachment; filename="audit-log-{today}.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1 + 3  # the export's own event is not in the file
    export = AuditEvent.objects.get(action="export_audit")
    assert (export.actor_name, export.outcome) == ("aud", "succeeded")
    assert export.parameters["filters"] == {"outcome": "denied"}


def test_export_with_bad_filters_goes_back_to_the_page_with_the_error(auditor, log):
    response = auditor.get(EXPORT, {"date_from": "nope"})
    assert response.status_code == 302
    assert response["Location"] == f"{AUDIT}?date_from=nope"
    assert not AuditEvent.objects.filter(action="export_audit").exists()


def test_export_link_carries_the_filters(auditor, log):
    html = auditor.get(AUDIT, {"outcome": "denied", "page": "1"}).content.decode()
    assert f'href="{EXPORT}?outcome=denied"' in html


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_auditors_and_administrators_can_read_and_export(client, users, log, role):
    client.force_login(users[role])
    assert client.get(AUDIT).status_code == 200
    assert "Export CSV" in client.get(AUDIT).content.decode()
    assert len(exported(client)) == 1 + 6


@pytest.mark.parametrize(
    "url, action", [(AUDIT, "view_audit"), (EXPORT, "export_audit")], ids=["page", "export"]
)
def test_helpdesk_gets_403_and_the_denial_is_recorded(client, users, url, action):
    client.force_login(users["helpdesk"])
    assert client.get(url, {"outcome": "denied"}).status_code == 403
    denial = AuditEvent.objects.get()
    assert (denial.actor_name, denial.action, denial.outcome) == ("hal", action, "denied")
    assert denial.parameters == {"method": "GET", "path": url}


def test_reading_the_log_is_not_enough_to_export_it(client, users, log):
    from django.contrib.auth.models import Permission

    reader = users["helpdesk"]
    reader.user_permissions.add(Permission.objects.get(codename="view_audit"))
    client.force_login(reader)
    assert client.get(AUDIT).status_code == 200
    assert "Export CSV" not in client.get(AUDIT).content.decode()
    assert client.get(EXPORT).status_code == 403
    assert AuditEvent.objects.filter(action="export_audit", outcome="denied").count() == 1


def test_anonymous_users_are_sent_to_login(client, log):
    for url in (AUDIT, EXPORT):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
