from django.urls import path

from portal import endpoint_views
from portal import inventory_views as views

app_name = "pools"
urlpatterns = [
    path("pools/", views.pool_list, name="list"),
    path("pools/new/", views.pool_create, name="create"),
    path("pools/<int:pk>/", views.pool_detail, name="detail"),
    path("pools/<int:pk>/live/", views.pool_live, name="live"),
    path("pools/<int:pk>/operate/<str:kind>/", views.pool_operate, name="operate"),
    path("pools/<int:pk>/datastores/", views.pool_datastores, name="pool_datastores"),
    path("pools/<int:pk>/resize/", views.pool_resize, name="resize"),
    path("desktops/<int:pk>/", views.desktop_detail, name="desktop"),
    path("datastores/", views.datastore_list, name="datastores"),
    path("images/", views.image_list, name="images"),
    path("images/<int:pk>/versions/", views.image_version_add, name="image_version_add"),
    path("hypervisors/", endpoint_views.endpoint_list, name="hypervisors"),
    path("hypervisors/<int:pk>/test/", endpoint_views.endpoint_test, name="hypervisor_test"),
    path("hypervisors/<int:pk>/sync/", endpoint_views.endpoint_sync, name="hypervisor_sync"),
    path(
        "hypervisors/<int:pk>/agent-token/",
        endpoint_views.endpoint_agent_token,
        name="hypervisor_agent_token",
    ),
]
