"""Read operations: the list (filtered as the Operations page filters it), one operation with
its progress and ETA (composer.progress, the operation page's counts and estimate), and its
desktops one by one. Actions on operations are in portal/api/actions.py."""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound

from composer import kinds, progress
from composer.models import DesktopTask, Operation
from pools.models import MAX_ID
from portal import desktop_filters
from portal.api import serializers as s
from portal.api.access import requires
from portal.api.inventory import Figures, checked


class OperationFilters(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Operation.Status.choices, required=False, allow_blank=True
    )
    kind = serializers.ChoiceField(choices=[], required=False, allow_blank=True)
    pool = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="The pool's name (operations of a deleted pool keep it) or its id.",
    )
    requested_by = serializers.CharField(
        required=False, allow_blank=True, max_length=150, help_text="Who asked: a username."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The registered kinds (composer/kinds/), read when asked, not at import.
        self.fields["kind"].choices = kinds.choices()


class ProgressFigures(Figures):
    def attach(self, rows):
        """Progress of every operation of the page in one query, and the time left of the
        running ones from it (no query): the operation pages' own functions."""
        return progress.attach_remaining(progress.attach_all(rows), timezone.now())


OPERATIONS = requires("composer.view_operation", action="view_operations")
OPERATION = requires("composer.view_operation", action="view_operation")


class OperationList(ProgressFigures, generics.ListAPIView):
    """Operations, newest first, with their progress and estimated time left."""

    serializer_class = s.OperationSerializer
    permission_classes = [OPERATIONS]
    # Ids grow with requested_at: newest first, by a unique key the cursor can use.
    ordering = "-id"

    def get_queryset(self):
        f = checked(OperationFilters, self.request)
        operations = Operation.objects.select_related("requested_by")
        if f.get("status"):
            operations = operations.filter(status=f["status"])
        if f.get("kind"):
            operations = operations.filter(kind=f["kind"])
        if pool := f.get("pool"):
            by_id = desktop_filters.int_param(pool) or 0
            operations = operations.filter(Q(pool_name=pool) | Q(pool_id=by_id))
        if f.get("requested_by"):
            operations = operations.filter(requested_by__username=f["requested_by"])
        return operations

    @extend_schema(parameters=[OperationFilters])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class OperationDetail(ProgressFigures, generics.RetrieveAPIView):
    """An operation, its progress counts, its estimated time left and its plan."""

    serializer_class = s.OperationDetailSerializer
    permission_classes = [OPERATION]
    queryset = Operation.objects.select_related("requested_by")


class TaskFilters(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=DesktopTask.Status.choices, required=False, allow_blank=True
    )


class OperationDesktops(generics.ListAPIView):
    """The operation's desktops, one row each: status, step, attempts, error."""

    serializer_class = s.OperationDesktopSerializer
    permission_classes = [OPERATION]

    def get_queryset(self):
        f = checked(TaskFilters, self.request)
        pk = self.kwargs["pk"]
        if not (0 < pk <= MAX_ID and Operation.objects.filter(pk=pk).exists()):
            raise NotFound("No such operation.")
        tasks = DesktopTask.objects.filter(operation_id=pk)
        if f.get("status"):
            tasks = tasks.filter(status=f["status"])
        return tasks

    @extend_schema(parameters=[TaskFilters])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
