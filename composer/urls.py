from django.urls import path

from composer import views

app_name = "composer"
urlpatterns = [
    path("operations/", views.operation_list, name="operations"),
    path("operations/<int:pk>/", views.operation_detail, name="operation"),
]
