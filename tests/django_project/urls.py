from django.urls import path

from tests.django_project import views

urlpatterns = [
    path("plain", views.plain),
    path("failing", views.failing),
    path("committed", views.committed),
    path("rolled-back", views.rolled_back),
    path("async", views.async_view),
]
