"""The endpoint form, built from the driver's settings class: one form field per setting, its
label, help, default, choices and bounds taken from the setting (composer/drivers/settings.py),
so a new driver brings no form of its own.

The form edits the endpoint's columns (name, driver, limits) and the chosen driver's settings;
`clean` checks the settings with the same `parse` the engine uses when it builds the driver,
and saves them as the row's JSON.
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import ImproperlyConfigured
from django.utils.text import capfirst

from composer.drivers import registry
from composer.drivers import settings as driver_settings
from composer.drivers.registry import Registration
from pools.models import HypervisorEndpoint

COLUMNS = ["name", "driver", "outage_window_seconds", "max_provisioning", "max_maintenance"]
LIMITS = "Limits"  # the group the endpoint's own limits are shown in


def form_field(s: driver_settings.Setting) -> forms.Field:
    """The form field for one setting."""
    common = {"label": capfirst(s.label), "help_text": s.help_text, "initial": s.default}
    if s.choices:
        return forms.TypedChoiceField(
            choices=s.choices, coerce=s.type, required=s.required or s.type is not str, **common
        )
    if s.type is bool:
        return forms.BooleanField(required=False, **common)
    bounds = {"min_value": s.min_value, "max_value": s.max_value}
    if s.type is int:
        return forms.IntegerField(**bounds, **common)
    if s.type is float:
        return forms.FloatField(**bounds, **common)
    return forms.CharField(required=s.required, **common)


def settings_fields(settings_class: type) -> dict[str, forms.Field]:
    fields = {s.name: form_field(s) for s in driver_settings.describe(settings_class)}
    clash = set(fields) & {f.name for f in HypervisorEndpoint._meta.get_fields()}
    if clash:
        raise ImproperlyConfigured(
            f"{settings_class.__name__} has settings named like endpoint columns: {sorted(clash)}"
        )
    return fields


class EndpointForm(forms.ModelForm):
    """An endpoint with no driver settings; `endpoint_form` adds the chosen driver's."""

    registration: Registration | None = None

    driver = forms.ChoiceField(
        choices=registry.choices,
        help_text="Saving with another driver shows that driver's settings to fill in.",
    )

    class Meta:
        model = HypervisorEndpoint
        fields = COLUMNS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.registration is None:
            return
        stored = self.instance.settings if isinstance(self.instance.settings, dict) else {}
        # Only when the row is on this driver: another driver's settings mean nothing here.
        if self.instance.pk and self.instance.driver == self.registration.name:
            for name in self.settings_names():
                if name in stored:
                    self.initial[name] = stored[name]
        self.initial.setdefault("driver", self.registration.name)

    @classmethod
    def settings_names(cls) -> list[str]:
        if cls.registration is None:
            return []
        return [s.name for s in driver_settings.describe(cls.registration.settings_class)]

    def clean(self):
        cleaned = super().clean()
        if self.registration is None:
            return cleaned
        names = self.settings_names()
        if any(name in self.errors for name in names):
            return cleaned
        values = {name: cleaned[name] for name in names}
        try:
            parsed = driver_settings.parse(self.registration.settings_class, values)
        except driver_settings.SettingsError as exc:
            self.add_error(exc.key if exc.key in self.fields else None, str(exc))
            return cleaned
        self.instance.settings = driver_settings.dump(parsed)
        return cleaned


def endpoint_form(driver: str) -> type[EndpointForm]:
    """The form for an endpoint on `driver` (a registered name; otherwise the columns only)."""
    try:
        found = registry.get(driver)
    except registry.UnknownDriver:
        return EndpointForm
    attrs = {"registration": found, **settings_fields(found.settings_class)}
    return type(f"{found.settings_class.__name__}EndpointForm", (EndpointForm,), attrs)


def fieldsets(driver: str) -> list[tuple[str | None, dict]]:
    """The admin's fieldsets for an endpoint on `driver`: its name and driver, the driver's
    groups of settings, then the limits (the driver's own, if it has a group so named)."""
    sets: dict[str | None, dict] = {None: {"fields": ["name", "driver"]}}
    try:
        found = registry.get(driver)
    except registry.UnknownDriver:
        found = None
    if found is not None:
        described = driver_settings.groups(found.settings_class)
        for s in driver_settings.describe(found.settings_class):
            group = sets.setdefault(s.group, {"fields": []})
            group["fields"].append(s.name)
            if described.get(s.group):
                group["description"] = described[s.group]
    limits = sets.setdefault(LIMITS, {"fields": []})
    limits["fields"] += ["outage_window_seconds", "max_provisioning", "max_maintenance"]
    return list(sets.items())
