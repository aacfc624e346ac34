"""The portal's pages, and /boom/, which fails as a bug would (the portal has no page that
fails on purpose): for tests/portal/test_request_logs.py."""

from django.contrib.auth.decorators import login_not_required
from django.urls import include, path


@login_not_required
def boom(request):
    raise RuntimeError("a bug\nover two lines")


urlpatterns = [path("boom/", boom), path("", include("portal.urls"))]
