"""The site's middleware: request ids, NUL bytes refused, queue outages told, our 404."""

import re
import uuid

from django.conf import settings
from django.contrib import messages
from django.shortcuts import render

from audit.log import Outcome, record
from composer.queue import collecting_unqueued
from portal.api.problems import json_problem
from portal.logs import current_request

# An id the proxy in front gave the request (X-Request-ID), kept if it is plain and short;
# anything else is replaced by one of ours. (It goes into log lines and audit events.)
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestIdMiddleware:
    """Give every request an id, echoed in a header and stored with its audit events and on
    its log lines (portal/logs.py). First of all the middleware, so that the lines of a
    refusal by any of them (a bad Host, a CSRF failure) carry it too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request.request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = current_request.set(request)
        try:
            response = self.get_response(request)
        finally:
            # The thread answers another request next. (Django's own line about this
            # response, written after the middleware, takes the request from its record.)
            current_request.reset(token)
        response["X-Request-ID"] = request.request_id
        return response


def _has_nul(request) -> bool:
    if "\x00" in request.path:
        return True
    for data in (request.GET, request.POST) if request.method == "POST" else (request.GET,):
        for key, values in data.lists():
            if "\x00" in key or any("\x00" in value for value in values):
                return True
    return False


class RejectNulMiddleware:
    """A NUL byte has no place in anything a person types, and PostgreSQL refuses it in every
    text column: a request carrying one (in its path, query or form) is answered 400 here,
    with the reason, before any view or database sees it. It is audited: it is not sent by
    accident."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _has_nul(request):
            record(
                actor=request.user,
                action="rejected_input",
                outcome=Outcome.DENIED,
                message="a NUL byte in the request",
                parameters={
                    "method": request.method,
                    "path": request.path.replace("\x00", "\\x00"),
                },
                request=request,
            )
            if request.path.startswith("/api/"):
                return json_problem(
                    400, "The request contained a NUL byte (\\x00), which the API never accepts."
                )
            return render(
                request,
                "400.html",
                {
                    "reason": "The request contained a NUL byte (\\x00), which the portal never "
                    "accepts in a name, a search or a form."
                },
                status=400,
            )
        return self.get_response(request)


class QueueOutageMiddleware:
    """A request whose work is saved but could not be put on the job queue (Redis unreachable)
    says so, instead of a 500 or a plain "queued": the reconciler queues the saved work when
    Redis is back (composer/queue.py). Inside MessageMiddleware, so its message is stored."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with collecting_unqueued() as unqueued:
            response = self.get_response(request)
        if unqueued:
            messages.warning(
                request,
                "Saved, but the job queue is unreachable right now: the work is queued and "
                "will start on its own when the job queue is back.",
            )
        return response


class OwnNotFoundPageMiddleware:
    """With DEBUG on (`make run`), Django answers an unknown address with its technical 404
    page: unstyled (its inline style is blocked by our Content-Security-Policy) and listing
    every URL pattern of the site. Answer with the portal's own 404 page instead, as with
    DEBUG off. (Tracebacks of real errors stay Django's: those help a developer.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            settings.DEBUG
            and response.status_code == 404
            and response.get("Content-Type", "").startswith("text/html")
            and not getattr(response, "portal_page", False)
        ):
            response = render(request, "404.html", status=404)
        return response
