"""Read the inventory: endpoints, datastores, images and versions, replicas, pools, desktops.

Every list costs a fixed number of queries per page, whatever its depth (cursor pages) and
whatever the rows hold: related rows come by select_related/prefetch, and counts (desktops by
state, use of a datastore) by one GROUP BY over the page's ids (`Figures.attach`), never a
query per row (tests/api/test_read_cost.py)."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Count, Prefetch, Q
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from composer.models import DesktopTask
from pools import usage
from pools.models import (
    MAX_ID,
    BaseImage,
    Datastore,
    Desktop,
    HypervisorEndpoint,
    ImageVersion,
    PersistentDisk,
    Pool,
    PoolDatastore,
    Replica,
)
from pools.states import DesktopState
from portal import desktop_filters
from portal.api import serializers as s
from portal.api.access import requires

# -- ground rules shared by every read view -------------------------------------------------


class Figures:
    """A list or detail view whose rows get figures counted once for the whole page:
    `attach(rows)` returns the rows to serialize (the same objects with attributes set, or
    objects that wrap them), with a fixed number of queries."""

    filters: type[serializers.Serializer] | None = None

    def attach(self, rows: list) -> list:
        return rows

    def chosen(self) -> dict:
        """The view's query-string filters, checked: a bad value is a 400 naming it."""
        if self.filters is None:
            return {}
        return checked(self.filters, self.request)

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        rows = self.attach(list(page))
        return self.get_paginated_response(self.get_serializer(rows, many=True).data)

    def retrieve(self, request, *args, **kwargs):
        row = self.attach([self.get_object()])[0]
        return Response(self.get_serializer(row).data)

    def get_object(self):
        if not 0 < self.kwargs["pk"] <= MAX_ID:  # no row has it; a query could not bind it
            raise NotFound("No such object.")
        return super().get_object()


def checked(filters: type[serializers.Serializer], request) -> dict:
    """Query-string parameters through a serializer (DRF's CharField refuses NUL bytes,
    max_length refuses a 10,000-character value, a ChoiceField an unknown state)."""
    found = filters(data=request.query_params)
    if not found.is_valid():
        raise ValidationError(found.errors)
    return found.validated_data


def an_id(**kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, **kwargs)


def counted(queryset, *keys: str) -> dict:
    """(key values) -> number of rows, by one GROUP BY."""
    return {
        row[:-1] if len(keys) > 1 else row[0]: row[-1]
        for row in queryset.values_list(*keys).annotate(n=Count("*")).order_by()
    }


# -- hypervisor endpoints ---------------------------------------------------------------------

HYPERVISORS = requires("pools.view_hypervisorendpoint", action="view_hypervisors")


class HypervisorList(Figures, generics.ListAPIView):
    """Every hypervisor endpoint: driver, limits and the last inventory sync (never the
    driver's settings, which name where its password is read from)."""

    serializer_class = s.HypervisorSerializer
    permission_classes = [HYPERVISORS]
    queryset = HypervisorEndpoint.objects.all()


class HypervisorDetail(Figures, generics.RetrieveAPIView):
    serializer_class = s.HypervisorSerializer
    permission_classes = [HYPERVISORS]
    queryset = HypervisorEndpoint.objects.all()


# -- datastores ---------------------------------------------------------------------------------

DATASTORES = requires("pools.view_datastore", action="view_datastores")


class DatastoreFilters(serializers.Serializer):
    endpoint = an_id(help_text="Only this hypervisor endpoint's datastores.")


class DatastoreFigures(Figures):
    def attach(self, rows):
        # What the Datastores page shows: four queries for the whole page (pools/usage.py).
        return usage.datastore_usage(rows)


class DatastoreList(DatastoreFigures, generics.ListAPIView):
    """Datastores with real use, over-commit use against the level applied, the room left
    under it, and the pools using each."""

    serializer_class = s.DatastoreSerializer
    permission_classes = [DATASTORES]
    filters = DatastoreFilters

    def get_queryset(self):
        datastores = Datastore.objects.select_related("endpoint")
        if endpoint := self.chosen().get("endpoint"):
            datastores = datastores.filter(endpoint_id=endpoint)
        return datastores

    @extend_schema(parameters=[DatastoreFilters])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class DatastoreDetail(DatastoreFigures, generics.RetrieveAPIView):
    serializer_class = s.DatastoreSerializer
    permission_classes = [DATASTORES]
    queryset = Datastore.objects.select_related("endpoint")


# -- images, versions, replicas -----------------------------------------------------------------

IMAGES = requires("pools.view_imageversion", action="view_images")

IMAGE_QUERYSET = BaseImage.objects.select_related("endpoint").prefetch_related(
    Prefetch("versions", queryset=ImageVersion.objects.order_by("created_at", "id"))
)


class ImageList(Figures, generics.ListAPIView):
    """Base images (parent VMs), each with its versions (snapshots), oldest first."""

    serializer_class = s.ImageSerializer
    permission_classes = [IMAGES]
    queryset = IMAGE_QUERYSET


class ImageDetail(Figures, generics.RetrieveAPIView):
    serializer_class = s.ImageSerializer
    permission_classes = [IMAGES]
    queryset = IMAGE_QUERYSET


class VersionFilters(serializers.Serializer):
    image = an_id(help_text="Only this base image's versions.")


class VersionFigures(Figures):
    def attach(self, rows):
        ids = [v.pk for v in rows]
        desktops = counted(Desktop.objects.filter(image_version_id__in=ids), "image_version_id")
        default_of = defaultdict(list)
        for pool in Pool.objects.filter(image_version_id__in=ids).only("name", "image_version"):
            default_of[pool.image_version_id].append(pool)
        for version in rows:
            version.desktop_count = desktops.get(version.pk, 0)
            version.default_of = default_of[version.pk]
        return rows


class ImageVersionList(VersionFigures, generics.ListAPIView):
    """Image versions, with the desktops built from each and the pools that use it for new
    desktops."""

    serializer_class = s.ImageVersionSerializer
    permission_classes = [IMAGES]
    filters = VersionFilters

    def get_queryset(self):
        versions = ImageVersion.objects.select_related("image")
        if image := self.chosen().get("image"):
            versions = versions.filter(image_id=image)
        return versions

    @extend_schema(parameters=[VersionFilters])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ImageVersionDetail(VersionFigures, generics.RetrieveAPIView):
    serializer_class = s.ImageVersionSerializer
    permission_classes = [IMAGES]
    queryset = ImageVersion.objects.select_related("image")


class ReplicaFilters(serializers.Serializer):
    image_version = an_id()
    datastore = an_id()
    status = serializers.ChoiceField(
        choices=Replica.Status.choices, required=False, allow_blank=True
    )


class ReplicaFigures(Figures):
    def attach(self, rows):
        # The images page's rule (pools.usage.ReplicaRow.unused), for this page's replicas.
        readers = counted(Desktop.objects.filter(replica_id__in=[r.pk for r in rows]), "replica_id")
        placed = counted(
            Desktop.objects.filter(
                image_version_id__in={r.image_version_id for r in rows},
                datastore_id__in={r.datastore_id for r in rows},
            ),
            "image_version_id",
            "datastore_id",
        )
        for replica in rows:
            replica.desktop_count = readers.get(replica.pk, 0)
            on_datastore = placed.get((replica.image_version_id, replica.datastore_id), 0)
            replica.unused = replica.desktop_count == 0 and on_datastore == 0
        return rows


class ReplicaList(ReplicaFigures, generics.ListAPIView):
    """Replicas (one per image version and datastore), with the desktops reading from each."""

    serializer_class = s.ReplicaSerializer
    permission_classes = [IMAGES]
    filters = ReplicaFilters

    def get_queryset(self):
        f = self.chosen()
        replicas = Replica.objects.select_related("datastore")
        if f.get("image_version"):
            replicas = replicas.filter(image_version_id=f["image_version"])
        if f.get("datastore"):
            replicas = replicas.filter(datastore_id=f["datastore"])
        if f.get("status"):
            replicas = replicas.filter(status=f["status"])
        return replicas

    @extend_schema(parameters=[ReplicaFilters])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ReplicaDetail(ReplicaFigures, generics.RetrieveAPIView):
    serializer_class = s.ReplicaSerializer
    permission_classes = [IMAGES]
    queryset = Replica.objects.select_related("datastore")


# -- pools ------------------------------------------------------------------------------------


class PoolFigures(Figures):
    def attach(self, rows):
        """Desktops by state and the datastore links of every pool of the page: two queries
        (the first answered by the desktop_pool_counts index alone)."""
        ids = [p.pk for p in rows]
        states = counted(Desktop.objects.filter(pool_id__in=ids), "pool_id", "state")
        links = defaultdict(list)
        for link in (
            PoolDatastore.objects.filter(pool_id__in=ids)
            .select_related("datastore")
            .order_by("datastore__name", "datastore_id")
        ):
            links[link.pool_id].append(link)
        for pool in rows:
            pool.desktop_states = {
                state: states.get((pool.pk, state), 0) for state in DesktopState.values
            }
            pool.desktop_total = sum(pool.desktop_states.values())
            pool.datastore_links = links[pool.pk]
        return rows


class PoolList(PoolFigures, generics.ListAPIView):
    """Every pool, by name, with its desktops counted by state and its datastores."""

    serializer_class = s.PoolSerializer
    permission_classes = [requires("pools.view_pool", action="view_pools")]
    queryset = Pool.objects.select_related("endpoint")
    ordering = "name"


class PoolDetail(PoolFigures, generics.RetrieveAPIView):
    serializer_class = s.PoolSerializer
    permission_classes = [requires("pools.view_pool", action="view_pool")]
    queryset = Pool.objects.select_related("endpoint")


# -- desktops ---------------------------------------------------------------------------------

DESKTOPS = requires("pools.view_desktop", action="view_desktop")


class DesktopFilters(serializers.Serializer):
    pool = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="A pool's id or its name (exact).",
    )
    state = serializers.ChoiceField(choices=DesktopState.choices, required=False, allow_blank=True)
    flag = serializers.ChoiceField(
        choices=list(desktop_filters.FLAGS.items()), required=False, allow_blank=True
    )
    user = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=150,
        help_text="Assigned or logged-on user, exact (as the helpdesk search).",
    )
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="Part of the desktop's name or of its assigned or logged-on user's.",
    )
    datastore = an_id()
    image_version = an_id()


class DesktopList(generics.ListAPIView):
    """Desktops by id (a unique key: cursor pages cost the same at any depth), filtered as the
    pool page's table filters them (portal/desktop_filters.py)."""

    serializer_class = s.DesktopSerializer
    permission_classes = [DESKTOPS]

    def get_queryset(self):
        f = checked(DesktopFilters, self.request)
        desktops = Desktop.objects.select_related("pool", "datastore")
        if pool := f.get("pool"):
            by_id = desktop_filters.int_param(pool)
            desktops = desktops.filter(Q(pool__name=pool) | Q(pool_id=by_id or 0))
        # The page's own filtering, so both mean the same; the order is the cursor's.
        return desktop_filters.apply(
            desktops,
            {
                "state": f.get("state", ""),
                "flag": f.get("flag", ""),
                "q": f.get("q", "").strip(),
                "user": f.get("user", "").strip(),
                "datastore": f.get("datastore"),
                "version": f.get("image_version"),
                "sort": "name",
                "descending": False,
            },
        )

    @extend_schema(parameters=[DesktopFilters])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class DesktopDetail(Figures, generics.RetrieveAPIView):
    """A desktop, with its persistent disks."""

    serializer_class = s.DesktopDetailSerializer
    permission_classes = [DESKTOPS]
    queryset = Desktop.objects.select_related("pool", "datastore").prefetch_related(
        Prefetch("disks", queryset=PersistentDisk.objects.select_related("datastore"))
    )


class DesktopHistory(generics.ListAPIView):
    """What operations did to a desktop, newest first: its task in each, with the operation
    (as the desktop's page lists them)."""

    serializer_class = s.DesktopHistorySerializer
    permission_classes = [DESKTOPS]
    ordering = "-id"

    def get_queryset(self):
        pk = self.kwargs["pk"]
        if not (0 < pk <= MAX_ID and Desktop.objects.filter(pk=pk).exists()):
            raise NotFound("No such desktop.")
        return DesktopTask.objects.filter(desktop_id=pk).select_related("operation__requested_by")
