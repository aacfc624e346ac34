"""The API's routes: /api/v1/... , the OpenAPI schema at /api/schema/ and its reference page at
/api/docs/ (Swagger UI from drf-spectacular-sidecar's static files: no CDN).

Every route answers for itself (401 problem+json, never the sign-in page's redirect), so each
is exempt from LoginRequiredMiddleware; an unknown /api/ address is a problem+json 404."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from portal.api import actions, agent, audit_log, inventory, operations, tokens, webhooks
from portal.api.problems import json_problem

app_name = "api"

v1 = [
    # -- inventory (read) -------------------------------------------------------------------
    path("hypervisors/", inventory.HypervisorList.as_view(), name="hypervisors"),
    path("hypervisors/<int:pk>/", inventory.HypervisorDetail.as_view(), name="hypervisor"),
    path("datastores/", inventory.DatastoreList.as_view(), name="datastores"),
    path("datastores/<int:pk>/", inventory.DatastoreDetail.as_view(), name="datastore"),
    path("images/", inventory.ImageList.as_view(), name="images"),
    path("images/<int:pk>/", inventory.ImageDetail.as_view(), name="image"),
    path("image-versions/", inventory.ImageVersionList.as_view(), name="image_versions"),
    path("image-versions/<int:pk>/", inventory.ImageVersionDetail.as_view(), name="image_version"),
    path("replicas/", inventory.ReplicaList.as_view(), name="replicas"),
    path("replicas/<int:pk>/", inventory.ReplicaDetail.as_view(), name="replica"),
    # GET lists (inventory.PoolList), POST creates (actions.PoolCollection extends it).
    path("pools/", actions.PoolCollection.as_view(), name="pools"),
    path("pools/<int:pk>/", inventory.PoolDetail.as_view(), name="pool"),
    path("desktops/", inventory.DesktopList.as_view(), name="desktops"),
    path("desktops/<int:pk>/", inventory.DesktopDetail.as_view(), name="desktop"),
    path("desktops/<int:pk>/history/", inventory.DesktopHistory.as_view(), name="desktop_history"),
    # -- actions ----------------------------------------------------------------------------
    path(
        "images/<int:pk>/versions/",
        actions.ImageVersionCreate.as_view(),
        name="image-versions-create",
    ),
    path("pools/<int:pk>/datastores/", actions.PoolDatastores.as_view(), name="pool-datastores"),
    path("pools/<int:pk>/operations/", actions.PoolOperations.as_view(), name="pool-operations"),
    path("pools/<int:pk>/resize/", actions.PoolResize.as_view(), name="pool-resize"),
    path("operations/<int:pk>/approve/", actions.OperationApprove.as_view(), name="approve"),
    path("operations/<int:pk>/discard/", actions.OperationDiscard.as_view(), name="discard"),
    path("operations/<int:pk>/pause/", actions.OperationPause.as_view(), name="pause"),
    path("operations/<int:pk>/resume/", actions.OperationResume.as_view(), name="resume"),
    path("operations/<int:pk>/cancel/", actions.OperationCancel.as_view(), name="cancel"),
    # -- operations -------------------------------------------------------------------------
    path("operations/", operations.OperationList.as_view(), name="operations"),
    path("operations/<int:pk>/", operations.OperationDetail.as_view(), name="operation"),
    path(
        "operations/<int:pk>/desktops/",
        operations.OperationDesktops.as_view(),
        name="operation_desktops",
    ),
    # -- audit log --------------------------------------------------------------------------
    path("audit/", audit_log.AuditLog.as_view(), name="audit"),
    # -- tokens -----------------------------------------------------------------------------
    path("tokens/", tokens.TokenList.as_view(), name="tokens"),
    path("tokens/<int:pk>/", tokens.TokenDetail.as_view(), name="token"),
    # -- webhooks ---------------------------------------------------------------------------
    path("webhooks/", webhooks.WebhookList.as_view(), name="webhooks"),
    path("webhooks/<int:pk>/", webhooks.WebhookDetail.as_view(), name="webhook"),
    path(
        "webhooks/<int:pk>/deliveries/",
        webhooks.WebhookDeliveries.as_view(),
        name="webhook_deliveries",
    ),
    # -- desktop agents ---------------------------------------------------------------------
    path("agent/sessions", agent.SessionReport.as_view(), name="agent_sessions"),
]


@csrf_exempt  # whatever the method: it changes nothing, and its answer is a problem+json
def not_found(request, rest=""):
    return json_problem(404, f"No API route {request.path}.")


urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    # Anything else under /api/, whatever it holds (a newline too).
    re_path(r"^(?P<rest>[\s\S]*)$", not_found),
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
