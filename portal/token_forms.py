"""The form that makes a personal API token on the tokens page (portal/token_views.py)."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.utils import timezone

from portal import tokens
from portal.models import ApiToken

NAME_MAX = ApiToken._meta.get_field("name").max_length


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=NAME_MAX,
        validators=[tokens.validate_name],
        help_text="What it is for, so that you know which one to revoke: a pipeline, a script.",
    )
    expires = forms.DateField(
        required=False,
        label="Expires after",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="It works until the end of this day (your time zone). Empty: until revoked.",
    )

    def clean_expires(self):
        day = self.cleaned_data["expires"]
        if day is None:
            return None
        if day < timezone.localdate():
            raise forms.ValidationError("Pick today or a later day.")
        try:
            # The first moment of the next day, where the user is.
            moment = timezone.make_aware(dt.datetime.combine(day + dt.timedelta(days=1), dt.time()))
            moment.astimezone(dt.UTC)  # the database keeps UTC: it must exist there too
        except (OverflowError, ValueError):
            raise forms.ValidationError("Pick an earlier day.") from None
        return moment

    @property
    def expires_at(self):
        return self.cleaned_data.get("expires")
