from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal import audit_views, helpdesk, views
from portal.security import PortalAuthenticationForm

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
    path("audit/", audit_views.audit_log, name="audit"),
    path("audit/export/", audit_views.audit_export, name="audit_export"),
    path("helpdesk/", helpdesk.search, name="helpdesk"),
    path("helpdesk/desktops/<int:pk>/<str:action>/", helpdesk.confirm, name="helpdesk_confirm"),
    path("", include("pools.urls")),
    path("", include("composer.urls")),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
]

# A database outage answers 503 with the portal's own page (portal/views.py).
handler500 = "portal.views.server_error"
