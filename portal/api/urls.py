"""The API's routes: /api/v1/... , the OpenAPI schema at /api/schema/ and its reference page at
/api/docs/ (Swagger UI from drf-spectacular-sidecar's static files: no CDN).

Every route answers for itself (401 problem+json, never the sign-in page's redirect), so each
is exempt from LoginRequiredMiddleware; an unknown /api/ address is a problem+json 404."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from portal.api import agent, inventory
from portal.api.problems import json_problem

app_name = "api"

v1 = [
    # -- inventory (read) -------------------------------------------------------------------
    path("pools/", inventory.PoolList.as_view(), name="pools"),
    path("pools/<int:pk>/", inventory.PoolDetail.as_view(), name="pool"),
    # -- actions ----------------------------------------------------------------------------
    # -- operations -------------------------------------------------------------------------
    # -- audit log --------------------------------------------------------------------------
    # -- tokens -----------------------------------------------------------------------------
    # -- webhooks ---------------------------------------------------------------------------
    # -- desktop agents ---------------------------------------------------------------------
    path("agent/sessions", agent.SessionReport.as_view(), name="agent_sessions"),
]


def not_found(request, rest=""):
    return json_problem(404, f"No API route {request.path}.")


urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    re_path(r"^(?P<rest>.*)$", not_found),
]


def _exempt(patterns):
    # Django 5.1's LoginRequiredMiddleware sends anonymous requests to the sign-in page; an
    # API client gets a 401 from the view instead.
    for pattern in patterns:
        if hasattr(pattern, "url_patterns"):
            _exempt(pattern.url_patterns)
        else:
            pattern.callback = login_not_required(pattern.callback)


_exempt(urlpatterns)
