"""The audit log page and its CSV export: filtered the same way, read-only."""

from __future__ import annotations

import csv
from datetime import date, datetime, time, timedelta

from django import forms
from django.core.paginator import Paginator
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from audit.labels import action_name, details_json
from audit.log import Outcome, record
from audit.models import AuditEvent
from pools.models import Desktop, Pool
from portal.permissions import require
from portal.roles import ADMINISTRATORS, AUDITORS, HELPDESK

PAGE_SIZE = 100
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)

# What the page shows; everything else (hashes, actor link) stays in the database.
PAGE_FIELDS = [
    "at",
    "actor_name",
    "role",
    "action",
    "target_type",
    "target_id",
    "target_name",
    "outcome",
    "message",
    "parameters",
    "operation_id",
    "request_id",
    "ip",
]
# Target types whose rows link to the target's page, while it exists.
TARGET_PAGES = {"pool": (Pool, "pools:detail"), "desktop": (Desktop, "pools:desktop")}
ROLES = [ADMINISTRATORS, HELPDESK, AUDITORS, "superuser", "none", "anonymous"]

CSV_HEADER = [
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
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# Text, not the browser's date input (shown mm/dd/yyyy in an en-US browser): dates are ISO
# everywhere in the portal (issue 10, item 11).
ISO_DATE = forms.DateInput(
    attrs={"placeholder": "YYYY-MM-DD", "inputmode": "numeric", "pattern": r"\d{4}-\d{2}-\d{2}"},
    format="%Y-%m-%d",
)


class AuditFilterForm(forms.Form):
    who = forms.CharField(required=False, max_length=150, label="Who")
    role = forms.ChoiceField(required=False, label="Role")
    action = forms.ChoiceField(required=False, label="Action")
    target = forms.CharField(required=False, max_length=255, label="Target")
    outcome = forms.ChoiceField(
        required=False, choices=[("", "Any outcome"), *Outcome.choices], label="Outcome"
    )
    # Bounded so that "the day after" and the time zone shift stay valid datetimes.
    date_from = forms.DateField(
        required=False,
        label="From",
        widget=ISO_DATE,
        validators=[MinValueValidator(FIRST_DAY), MaxValueValidator(LAST_DAY)],
    )
    date_to = forms.DateField(
        required=False,
        label="To",
        widget=ISO_DATE,
        validators=[MinValueValidator(FIRST_DAY), MaxValueValidator(LAST_DAY)],
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [("", "Any role")] + [(r, r) for r in ROLES]
        # One query over the (action, at) index; a new action shows up without code changes.
        actions = AuditEvent.objects.order_by("action").values_list("action", flat=True)
        self.fields["action"].choices = [("", "Any action")] + [
            (a, action_name(a)) for a in actions.distinct()
        ]

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def filter(self, events: QuerySet) -> QuerySet:
        data = self.cleaned_data
        if data["who"]:
            events = events.filter(actor_name__icontains=data["who"])
        if data["role"]:
            events = events.filter(role=data["role"])
        if data["action"]:
            events = events.filter(action=data["action"])
        if data["target"]:
            events = events.filter(target_name__icontains=data["target"])
        if data["outcome"]:
            events = events.filter(outcome=data["outcome"])
        # Whole days in the portal's time zone, as a range on `at` so its index serves.
        if data["date_from"]:
            events = events.filter(at__gte=_start_of(data["date_from"]))
        if data["date_to"]:
            events = events.filter(at__lt=_start_of(data["date_to"] + timedelta(days=1)))
        return events

    def used(self) -> dict:
        """The filters in use, as plain values (for the export's own audit event)."""
        return {k: str(v) for k, v in self.cleaned_data.items() if v}


def _start_of(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


@require("audit.view_audit", action="view_audit")
def audit_log(request):
    """Newest first, filtered by who, role, action, target, outcome and dates."""
    form = AuditFilterForm(request.GET)
    events = AuditEvent.objects.only(*PAGE_FIELDS).order_by("-at", "-id")
    events = form.filter(events) if form.is_valid() else events.none()
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = _with_target_links(list(page.object_list))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "portal/audit_log.html",
        {
            "form": form,
            "page": page,
            "filtered": any(v for k, v in request.GET.items() if k != "page"),
            "export_url": reverse("audit_export") + (f"?{query.urlencode()}" if query else ""),
        },
    )


@require("audit.view_audit", "audit.export_audit", action="export_audit")
def audit_export(request):
    """The filtered rows, all pages, as CSV; the export is itself recorded."""
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        return redirect(f"{reverse('audit')}?{request.GET.urlencode()}")
    # The rows as they are now: neither this export's own event nor events written while
    # the file streams get in, so the file is one consistent cut of the log.
    last_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    events = form.filter(AuditEvent.objects.filter(id__lte=last_id)).order_by("-at", "-id")
    record(
        actor=request.user,
        action="export_audit",
        outcome=Outcome.SUCCEEDED,
        parameters={"filters": form.used(), "up_to_event": last_id},
        request=request,
    )
    filename = f"audit-log-{timezone.localdate():%Y-%m-%d}.csv"
    response = StreamingHttpResponse(_csv_lines(events), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class _Echo:
    """A file-like object for csv.writer that hands each line back instead of storing it."""

    def write(self, value):
        return value


def _csv_lines(events: QuerySet):
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    for e in events.iterator(chunk_size=2000):
        row = [
            timezone.localtime(e.at).isoformat(),
            e.actor_name,
            e.role,
            action_name(e.action),
            e.action,
            e.target_type,
            e.target_name,
            e.outcome,
            e.message,
            details_json(e.parameters),
            e.operation_id or "",
            e.request_id,
            e.ip or "",
            e.hash,
        ]
        yield writer.writerow([_safe_cell(value) for value in row])


def _safe_cell(value) -> str:
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _with_target_links(events: list[AuditEvent]) -> list[AuditEvent]:
    """Link each row to its target while the target exists: one query per target type,
    whatever the number of rows."""
    wanted = {kind: set() for kind in TARGET_PAGES}
    for e in events:
        if e.target_type in wanted and _is_id(e.target_id):
            wanted[e.target_type].add(int(e.target_id))
    existing = {}
    for kind, (model, _) in TARGET_PAGES.items():
        ids = model.objects.filter(pk__in=wanted[kind]).order_by().values_list("pk", flat=True)
        existing[kind] = set(ids) if wanted[kind] else set()
    for e in events:
        e.target_url = ""
        if e.target_type in existing and _is_id(e.target_id):
            if int(e.target_id) in existing[e.target_type]:
                e.target_url = reverse(TARGET_PAGES[e.target_type][1], args=[e.target_id])
    return events


def _is_id(value: str) -> bool:
    return value.isascii() and value.isdigit()
