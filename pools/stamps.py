"""Every write of a stamped row moves its `updated_at`, however it is written.

Live pages (portal/live.py) answer "nothing changed since your last poll" from the newest
`updated_at` of what they show, one index lookup instead of rendering. That is only right if
no write can leave `updated_at` behind: `auto_now` covers save() of the whole row, but not
save(update_fields=[...]) without it, nor QuerySet.update() or bulk_update(). Both are
covered here, in one place, rather than at each of the writes in the engine.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class StampedQuerySet(models.QuerySet):
    def update(self, **kwargs):
        # bulk_update() goes through update() too.
        kwargs.setdefault("updated_at", timezone.now())
        return super().update(**kwargs)


class Stamped(models.Model):
    """Abstract: an `updated_at` that every write moves (see the module's docstring)."""

    updated_at = models.DateTimeField(auto_now=True)

    objects = StampedQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        fields = kwargs.get("update_fields")
        if fields is not None:  # any iterable: read it once
            fields = list(fields)
            if fields and "updated_at" not in fields:  # empty: Django saves nothing
                fields.append("updated_at")
            kwargs["update_fields"] = fields
        super().save(*args, **kwargs)
