"""Desktops stuck in a busy state: what the dashboard counts as a problem and the pool page
filters by. The reconciler repairs the ones no live operation holds (reconciler.py)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from composer.models import DesktopTask
from pools.states import BUSY, DesktopState

S = DesktopState

# A desktop busy this long with no live operation task holding it is stuck...
STUCK_BUSY_AFTER = timedelta(minutes=30)
# ...and one in Maintenance this long is stuck even if an operation still claims it.
STUCK_MAINTENANCE_AFTER = timedelta(hours=1)


def stuck_q(now=None) -> Q:
    """Busy for more than 30 minutes with no live operation task, or in Maintenance for more
    than an hour whatever holds it.

    Written as one range on (state, state_changed_at) (an hour in Maintenance is also more
    than 30 minutes busy), so the desktop_state_changed index finds the few candidates and
    only they are checked against the live tasks.
    """
    now = now or timezone.now()
    return Q(state__in=BUSY, state_changed_at__lt=now - STUCK_BUSY_AFTER) & (
        ~Q(pk__in=DesktopTask.objects.held().values("desktop_id"))
        | Q(state=S.MAINTENANCE, state_changed_at__lt=now - STUCK_MAINTENANCE_AFTER)
    )
