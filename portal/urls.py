from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import Http404, JsonResponse
from django.urls import include, path, re_path

from portal import (
    audit_views,
    health,
    helpdesk,
    metrics,
    time_zones,
    token_views,
    views,
    webhook_views,
)
from portal.security import PortalAuthenticationForm

# django-rq's stats.json/<token>/ (under admin/rq/, and again in the admin's django_rq pages)
# hands the token to hmac.compare_digest, which raises on a non-ASCII character: a 500 for
# anyone signed in. No token has one, so such a request is refused before django-rq sees it,
# as django-rq refuses a wrong token.
NON_ASCII_TOKEN = r"stats.json/(?P<token>\w*[^\x00-\x7f]\w*)/?$"


def refuse_token(request, token):
    return JsonResponse({"error": True, "description": "Invalid token."}, status=401)


def no_rq_metrics(request):
    """django-rq adds admin/rq/metrics/ (and admin/django_rq/dashboard/metrics/) once
    prometheus-client is installed: a second, staff-only view of the queues, whose `name[]`
    filter replaces its registry for every later request (then a 500). The portal's /metrics
    has the queues (portal/metrics.py)."""
    raise Http404("The portal's metrics are at /metrics.")


# Administrators' webhooks (portal/webhook_views.py).
webhook_urls = [
    path("", webhook_views.webhook_list, name="list"),
    path("new/", webhook_views.webhook_create, name="create"),
    path("<int:pk>/", webhook_views.webhook_detail, name="detail"),
    path("<int:pk>/rotate/", webhook_views.webhook_rotate, name="rotate"),
    path("<int:pk>/test/", webhook_views.webhook_test, name="test"),
    path("<int:pk>/delete/", webhook_views.webhook_delete, name="delete"),
]


urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            redirect_authenticated_user=True, authentication_form=PortalAuthenticationForm
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/preferences/", time_zones.preferences, name="preferences"),
    path("accounts/tokens/", token_views.own_tokens, name="tokens"),
    path("accounts/tokens/all/", token_views.all_tokens, name="tokens_all"),
    path("accounts/tokens/<int:pk>/revoke/", token_views.revoke, name="token_revoke"),
    path("audit/", audit_views.audit_log, name="audit"),
    path("audit/export/", audit_views.audit_export, name="audit_export"),
    path("helpdesk/", helpdesk.search, name="helpdesk"),
    path("helpdesk/desktops/<int:pk>/<str:action>/", helpdesk.confirm, name="helpdesk_confirm"),
    path("", include("portal.inventory_urls")),
    path("", include("portal.operation_urls")),
    path("webhooks/", include((webhook_urls, "webhooks"))),
    re_path(rf"^admin/rq/{NON_ASCII_TOKEN}", refuse_token),
    # django-rq's own pattern, so that it is plainly the same route, taken first.
    path("admin/rq/", include([re_path(r"^metrics/?$", no_rq_metrics)])),
    path("admin/rq/", include("django_rq.urls")),
    re_path(rf"^admin/django_rq/dashboard/{NON_ASCII_TOKEN}", refuse_token),
    path("api/", include("portal.api.urls")),
    # The same page again in django-rq's admin integration.
    path("admin/django_rq/dashboard/", include([re_path(r"^metrics/?$", no_rq_metrics)])),
    path("admin/", admin.site.urls),
    path("favicon.ico", views.favicon),
    # For load balancers and Prometheus: no sign-in (portal/health.py, portal/metrics.py).
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
]

# A database outage answers 503 with the portal's own page (portal/views.py).
handler500 = "portal.views.server_error"
