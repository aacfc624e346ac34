from __future__ import annotations

from django.conf import settings
from django.shortcuts import redirect, render

from portal import dashboard as dashboard_data


def dashboard(request):
    """Everyone signed in lands here; each section shows only what the user may see.

    Helpdesk staff have one page, the helpdesk: the dashboard sends them there. The live part
    (counters, bars, operations, workers) is re-fetched every POLL_SECONDS by htmx; without
    JavaScript the page is complete as loaded.
    """
    user = request.user
    if not user.has_perm("pools.view_pool") and user.has_perm("pools.view_desktop"):
        return redirect("helpdesk")
    context = dashboard_data.gather(user)
    context["poll_seconds"] = settings.POLL_SECONDS
    if request.htmx:
        return render(request, "portal/dashboard.html#live", context)
    return render(request, "portal/dashboard.html", context)
