"""Each user sees moments in their own time zone (issue 10, item 11), the server's
(settings.TIME_ZONE) until they choose one on their preferences page.

The zone lives in the session, copied there from portal.models.Preference at sign-in, so
the middleware that activates it costs no query: pages polled every 2 s stay cheap.
"""

from __future__ import annotations

import zoneinfo
from functools import cache

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.shortcuts import redirect, render
from django.utils import timezone

from portal.models import Preference

SESSION_KEY = "time_zone"


@cache
def zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def valid(name: str) -> bool:
    return name in set(zones())


class UserTimeZoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = request.session.get(SESSION_KEY, "") if hasattr(request, "session") else ""
        if name and valid(name):
            timezone.activate(zoneinfo.ZoneInfo(name))
        else:
            timezone.deactivate()  # the server's
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


@receiver(user_logged_in)
def _remember_zone(sender, request, user, **kwargs):
    name = Preference.objects.filter(user=user).values_list("time_zone", flat=True).first()
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_KEY] = name or ""


class PreferencesForm(forms.Form):
    time_zone = forms.ChoiceField(
        required=False,
        label="Time zone",
        help_text="Every time in the portal is shown in it, with its abbreviation.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = [
            ("", f"The server's ({settings.TIME_ZONE})"),
            *((name, name) for name in zones()),
        ]


def preferences(request):
    """The signed-in user's own choices: any role may set them."""
    current = request.session.get(SESSION_KEY, "")
    form = PreferencesForm(request.POST or None, initial={"time_zone": current})
    if request.method == "POST" and form.is_valid():
        name = form.cleaned_data["time_zone"]
        Preference.objects.update_or_create(user=request.user, defaults={"time_zone": name})
        request.session[SESSION_KEY] = name
        messages.success(request, f"Times are now shown in {name or settings.TIME_ZONE}.")
        return redirect("preferences")
    now = timezone.localtime(timezone=zoneinfo.ZoneInfo(current) if valid(current) else None)
    return render(request, "portal/preferences.html", {"form": form, "now": now})
