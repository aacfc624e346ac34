"""The webhook form: name, receiver URL (composer/webhooks/addresses.py says which are
allowed), the events it subscribes to, and whether it is on."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from composer.webhooks import EVENTS
from composer.webhooks.addresses import MAX_LENGTH, check_url
from composer.webhooks.hooks import HookSpec


class WebhookForm(forms.Form):
    name = forms.CharField(max_length=100)
    url = forms.CharField(
        label="URL",
        max_length=MAX_LENGTH,
        help_text="https:// only. Each delivery is a signed POST of JSON (see the README).",
        widget=forms.URLInput(attrs={"placeholder": "https://hooks.example.com/portal"}),
    )
    events = forms.MultipleChoiceField(
        choices=list(EVENTS.items()), widget=forms.CheckboxSelectMultiple
    )
    active = forms.BooleanField(
        required=False, initial=True, help_text="Off: events are not sent to it."
    )

    def clean_url(self):
        return check_url(self.cleaned_data["url"])

    def spec(self) -> HookSpec:
        return HookSpec(**self.cleaned_data)

    def add_service_errors(self, error: ValidationError) -> None:
        """The service's own checks (the same as above), by field."""
        for name, messages in error.message_dict.items():
            self.add_error(name if name in self.fields else None, messages)

    @classmethod
    def for_hook(cls, hook, data=None):
        initial = {"name": hook.name, "url": hook.url, "events": hook.events, "active": hook.active}
        return cls(data, initial=initial)
