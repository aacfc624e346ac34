from django.urls import path

from portal import operation_views as views

app_name = "composer"
urlpatterns = [
    path("operations/", views.operation_list, name="operations"),
    path("operations/<int:pk>/", views.operation_detail, name="operation"),
    path("operations/<int:pk>/plan/", views.plan_detail, name="plan"),
    path("operations/<int:pk>/approve/", views.plan_approve, name="approve"),
    path("operations/<int:pk>/discard/", views.plan_discard, name="discard"),
    path("operations/<int:pk>/cancel/", views.operation_cancel, name="cancel"),
    path("operations/<int:pk>/pause/", views.operation_pause, name="pause"),
    path("operations/<int:pk>/resume/", views.operation_resume, name="resume"),
]
