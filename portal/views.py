from __future__ import annotations

import sys

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse, HttpResponseServerError
from django.shortcuts import redirect, render
from django.template import loader
from django.templatetags.static import static
from django.views.defaults import server_error as django_server_error

from composer import outages
from portal import dashboard as dashboard_data
from portal import live


def dashboard(request):
    """Everyone signed in lands here; each section shows only what the user may see.

    Helpdesk staff have one page, the helpdesk: the dashboard sends them there. The live part
    (counters, bars, operations, workers) is polled by htmx every POLL_SECONDS while work
    runs, and only every IDLE_POLL_SECONDS otherwise (a wall screen still notices a new
    failure or an operation started elsewhere); a poll where nothing changed is answered 204
    without gathering anything (portal/live.py). Without JavaScript the page is complete as
    loaded.
    """
    user = request.user
    if not user.has_perm("pools.view_pool") and user.has_perm("pools.view_desktop"):
        return redirect("helpdesk")
    stamps = live.dashboard_stamps()
    part = None
    if request.htmx:  # a poll: one part (a page of an older version asks with no part)
        part = request.GET.get("part")
        part = part if part in dashboard_data.PARTS else "activity"
    current = {p: live.version(p, user.pk, *stamps) for p in dashboard_data.PARTS}
    if part and (answer := live.unchanged(request, current[part])):
        return answer
    context = dashboard_data.gather(user, part, stamps)
    context["live_version"] = current
    busy = context.get("running_operations") or (context.get("workers") or {}).get("queued")
    context["poll_seconds"] = settings.POLL_SECONDS if busy else settings.IDLE_POLL_SECONDS
    context["idle_poll_seconds"] = settings.IDLE_POLL_SECONDS
    if part:
        return live.compressed(request, render(request, f"portal/dashboard.html#{part}", context))
    return render(request, "portal/dashboard.html", context)


def server_error(request):
    """handler500. A database that cannot be reached is not a bug of the page: answer 503 with
    our own page saying so, rendered without the request (its user and session live in that
    database), and note the outage for the dashboard (composer/outages.py)."""
    exc = sys.exc_info()[1]
    if not outages.is_database_unreachable(exc):
        return django_server_error(request)
    outages.note_database_unreachable("web server", exc)
    try:
        body = loader.get_template("503.html").render({})
    except Exception:  # the page must not fail in its turn
        return HttpResponseServerError("The database is unreachable.", content_type="text/plain")
    response = HttpResponse(body, status=503)
    response["Retry-After"] = "10"
    return response


@login_not_required
def favicon(request):
    """Browsers ask for /favicon.ico whatever the page's <link rel="icon"> says."""
    return redirect(static("portal/favicon.svg"), permanent=True)
