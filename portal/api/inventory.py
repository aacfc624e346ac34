"""Read the inventory: endpoints, datastores, images and versions, replicas, pools, desktops."""

from __future__ import annotations

from rest_framework import generics

from pools.models import Pool
from portal.api.access import requires
from portal.api.serializers import PoolSerializer


class PoolList(generics.ListAPIView):
    """Every pool, by name."""

    serializer_class = PoolSerializer
    permission_classes = [requires("pools.view_pool", action="view_pools")]
    queryset = Pool.objects.select_related("endpoint")
    ordering = "name"


class PoolDetail(generics.RetrieveAPIView):
    serializer_class = PoolSerializer
    permission_classes = [requires("pools.view_pool", action="view_pool")]
    queryset = Pool.objects.select_related("endpoint")
