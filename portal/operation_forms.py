"""The form behind every maintenance operation: the options DESIGN.md lists for all of them,
plus the few each kind adds. It only validates input; composer.services decides and acts."""

from __future__ import annotations

import uuid

from django import forms
from django.utils import timezone

from composer import kinds
from composer.models import Operation
from composer.services import Options
from pools.models import MAX_ID, Desktop, Pool
from portal import desktop_filters

# How many selected desktop names a page lists before summarising the rest.
NAMES_SHOWN = 50

# The last year an operation may be scheduled in.
LAST_YEAR = 9998


def resolve_desktops(pool: Pool, raw_ids: list[str]) -> list[Desktop]:
    """The pool's desktops with these ids, or a ValidationError naming each bad one."""
    ids, bad = set(), []
    for raw in raw_ids:
        try:
            number = int(raw)
        except (TypeError, ValueError):
            number = None
        if number is not None and abs(number) <= MAX_ID:
            ids.add(number)
        else:  # not a number, or one beyond any id (the database could not even bind it)
            bad.append(str(raw)[:20])
    if bad:
        raise forms.ValidationError(f"Not desktop ids: {', '.join(bad[:10])}.")
    found = {d.pk: d for d in Desktop.objects.filter(pk__in=ids).select_related("datastore")}
    missing = sorted(ids - set(found))
    if missing:
        raise forms.ValidationError(
            f"No such desktop: {', '.join(str(i) for i in missing[:10])}. "
            "It may have been deleted; go back to the pool page and select again."
        )
    foreign = sorted(d.name for d in found.values() if d.pool_id != pool.pk)
    if foreign:
        raise forms.ValidationError(f"Not in pool {pool.name}: {', '.join(foreign[:10])}.")
    return sorted(found.values(), key=lambda d: d.name)


class DesktopIdsField(forms.Field):
    """The selected desktops, as repeated hidden `desktop` values; empty means the whole pool."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        if not value:
            return []
        values = [value] if isinstance(value, str) else list(value)
        return [v for v in values if v != ""]


def new_submission() -> str:
    return uuid.uuid4().hex


class OperationForm(forms.Form):
    WHEN = [("now", "Now"), ("later", "At a given time")]

    desktop = DesktopIdsField(required=False)
    # One-time token: a double submit returns the operation the first one started.
    submission = forms.CharField(
        required=False, max_length=64, widget=forms.HiddenInput, initial=new_submission
    )
    # Set by the pool page's selection bar: an empty selection then means "nothing chosen",
    # never "the whole pool".
    selection = forms.BooleanField(required=False, widget=forms.HiddenInput)
    # "All N matching this filter" on the pool page: the filter itself (a query string such
    # as "state=error"), resolved to desktops when the form is shown and again when it is
    # sent, instead of thousands of ids.
    match = forms.CharField(required=False, max_length=2000, widget=forms.HiddenInput)

    when = forms.ChoiceField(choices=WHEN, initial="now", widget=forms.RadioSelect, label="Start")
    start_at = forms.DateTimeField(
        required=False,
        label="Start at",
        # Text, not the browser's datetime-local, whose display follows the browser's locale
        # (mm/dd/yyyy): the portal writes every moment one way, ISO (issue 10, item 11).
        widget=forms.DateTimeInput(
            attrs={"placeholder": "YYYY-MM-DD HH:MM", "inputmode": "numeric"},
            format="%Y-%m-%d %H:%M",
        ),
    )
    logoff_policy = forms.ChoiceField(
        choices=Operation.LogoffPolicy.choices,
        initial=Operation.LogoffPolicy.WAIT,
        label="Users logged on",
    )
    warning_message = forms.CharField(
        required=False,
        max_length=500,
        label="Warning message",
        help_text="Shown to logged-on users before a forced logoff.",
        initial="Your desktop will be logged off for maintenance. Save your work now.",
    )
    grace_seconds = forms.IntegerField(
        min_value=0,
        max_value=86400,
        initial=300,
        label="Grace period (seconds)",
        help_text="Time between the warning and the forced logoff.",
    )
    stop_on_error = forms.BooleanField(required=False, label="Stop at the first error")

    LOGOFF_FIELDS = ("logoff_policy", "warning_message", "grace_seconds")

    def __init__(self, *args, pool: Pool, kind: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool, self.kind = pool, kind
        self.spec = kinds.get(kind)
        # The kind's own fields (recompose's target version, delete's keep disks, ...).
        own = self.spec.form_fields(pool)
        self.kind_field_names = list(own)
        self.fields.update(own)
        if not self.spec.takes_logoff_policy:
            # Logging off is the operation itself: the engine neither waits nor warns first.
            for name in self.LOGOFF_FIELDS:
                del self.fields[name]
        now = timezone.localtime()
        self.fields["start_at"].help_text = (
            f"In your time zone ({timezone.get_current_timezone_name()}); "
            f"it is now {now:%Y-%m-%d %H:%M}."
        )

    @property
    def kind_fields(self):
        return [self[name] for name in self.kind_field_names]

    @property
    def option_fields(self):
        names = ("when", "start_at", *self.LOGOFF_FIELDS, "stop_on_error")
        return [self[name] for name in names if name in self.fields]

    def clean_desktop(self):
        raw = self.cleaned_data["desktop"]
        if not raw:
            return None
        return resolve_desktops(self.pool, raw)

    def clean(self):
        data = super().clean()
        if data.get("match") and "desktop" not in self.errors:
            data["desktop"] = desktop_filters.matching(self.pool, data["match"])
            if not data["desktop"]:
                self.add_error("desktop", "No desktop matches this filter any more.")
        if data.get("selection") and "desktop" not in self.errors and not data.get("desktop"):
            self.add_error("desktop", "No desktops selected: tick them on the pool page first.")
        if data.get("when") == "later":
            start_at = data.get("start_at")
            if start_at is None:
                if "start_at" not in self.errors:
                    self.add_error("start_at", "Give the date and time to start.")
            elif start_at <= timezone.now():
                self.add_error(
                    "start_at",
                    f"Must be in the future ({timezone.get_current_timezone_name()}).",
                )
            elif start_at.year > LAST_YEAR:
                # Shifted to UTC, a time late in 9999 leaves the range of dates: saving it
                # (or reading it back) would fail.
                self.add_error("start_at", f"Must be before the year {LAST_YEAR + 1}.")
        return data

    @property
    def desktops(self) -> list[Desktop] | None:
        """The chosen desktops; None for the whole pool."""
        return self.cleaned_data["desktop"]

    def options(self) -> Options:
        data = self.cleaned_data
        defaults = Options()
        return Options(
            start_at=data["start_at"] if data["when"] == "later" else None,
            logoff_policy=data.get("logoff_policy", defaults.logoff_policy),
            warning_message=data.get("warning_message", defaults.warning_message),
            grace_seconds=data.get("grace_seconds", defaults.grace_seconds),
            stop_on_error=data["stop_on_error"],
        )

    def extra(self) -> dict:
        """The kind's own options, under the keys the engine reads."""
        return self.spec.extra(self.cleaned_data)
