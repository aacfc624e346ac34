"""How action requests and their answers look in the API (the write side).

The request serializers check only the shape of what a script sends (types, lists, the
schema); the rules are the pages' own forms (portal/pool_forms.py, portal/operation_forms.py),
fed from the JSON, so there is one set of them."""

from __future__ import annotations

from rest_framework import serializers

from composer import kinds
from composer.models import DesktopTask, Operation
from pools.models import ImageVersion, Overcommit, Pool, PoolDatastore
from portal.api.serializers import PoolSerializer

# -- image versions ---------------------------------------------------------------------------


class VersionRequestSerializer(serializers.Serializer):
    snapshot = serializers.CharField(
        allow_blank=True,
        trim_whitespace=False,
        help_text="The snapshot of the image's parent VM; the hypervisor must have it.",
    )


class RegisteredVersionSerializer(serializers.ModelSerializer):
    image = serializers.PrimaryKeyRelatedField(read_only=True)
    image_name = serializers.CharField(source="image.name", read_only=True)

    class Meta:
        model = ImageVersion
        fields = ["id", "image", "image_name", "snapshot", "disk_mb", "used_mb", "created_at"]
        read_only_fields = fields


# -- pools ------------------------------------------------------------------------------------


class PoolRequestSerializer(serializers.Serializer):
    """The fields of the pool form (portal/pool_forms.PoolForm), under the same names."""

    name = serializers.CharField(max_length=64)
    naming_pattern = serializers.CharField(max_length=64, help_text="e.g. VDI-{n:fixed=3}")
    size = serializers.IntegerField()
    image_version = serializers.IntegerField(help_text="The image version's id.")
    datastores = serializers.ListField(child=serializers.IntegerField(), allow_empty=False)
    overcommit = serializers.ChoiceField(choices=Overcommit.choices, required=False)
    power_policy = serializers.ChoiceField(choices=Pool.PowerPolicy.choices, required=False)
    persistent_disk_gb = serializers.IntegerField(required=False)
    max_concurrent_provisioning = serializers.IntegerField(required=False)
    domain = serializers.CharField(required=False, allow_blank=True)
    accept_warnings = serializers.BooleanField(
        required=False,
        help_text="Create it even though the datastores would pass their warning level.",
    )


class DatastoreChoiceSerializer(serializers.Serializer):
    datastore = serializers.IntegerField(help_text="The datastore's id.")
    selected = serializers.BooleanField(required=False)
    overcommit = serializers.ChoiceField(choices=Overcommit.choices, required=False)


class PoolDatastoresRequestSerializer(serializers.Serializer):
    """Datastores of the pool's hypervisor to select, deselect or set the over-commit of;
    those not listed stay as they are. Deselect one, then rebalance, to vacate it."""

    datastores = serializers.ListField(child=DatastoreChoiceSerializer(), allow_empty=False)


class PoolDatastoreLinkSerializer(serializers.ModelSerializer):
    datastore_name = serializers.CharField(source="datastore.name", read_only=True)

    class Meta:
        model = PoolDatastore
        fields = ["datastore", "datastore_name", "selected", "overcommit"]
        read_only_fields = fields


# -- operations -------------------------------------------------------------------------------


def _kind_options_help() -> str:
    """Each kind's own options, from the kinds themselves (their form fields)."""
    probe = Pool()  # the fields only read the pool lazily (querysets)
    lines = []
    for kind in kinds.on_pool_page():
        names = list(kind.form_fields(probe))
        lines.append(f"{kind.name}: {', '.join(names) if names else '(none)'}")
    return "The kind's own options. " + "; ".join(lines) + "."


class OperationRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[(k.name, k.label) for k in kinds.on_pool_page()])
    desktops = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        allow_null=True,
        help_text="Desktop ids of the pool; omit (or null) for the whole pool.",
    )
    start_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Omit or null: now."
    )
    logoff_policy = serializers.ChoiceField(choices=Operation.LogoffPolicy.choices, required=False)
    warning_message = serializers.CharField(required=False, allow_blank=True)
    grace_seconds = serializers.IntegerField(required=False)
    stop_on_error = serializers.BooleanField(required=False)
    options = serializers.DictField(required=False, help_text=_kind_options_help())
    dry_run = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Return what it would do (the plan, for a planned kind) and keep nothing.",
    )


class TaskSerializer(serializers.ModelSerializer):
    class Meta:
        model = DesktopTask
        fields = ["desktop", "desktop_name", "status", "error", "target_datastore"]
        read_only_fields = fields


class OperationResultSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    planned = serializers.SerializerMethodField()
    tasks = serializers.SerializerMethodField()

    class Meta:
        model = Operation
        fields = [
            "id",
            "kind",
            "status",
            "planned",
            "pool",
            "pool_name",
            "requested_by",
            "requested_at",
            "scheduled_for",
            "started_at",
            "finished_at",
            "logoff_policy",
            "warning_message",
            "grace_seconds",
            "stop_on_error",
            "options",
            "plan",
            "error",
            "tasks",
        ]
        read_only_fields = fields

    def get_planned(self, operation) -> bool:
        return operation.spec.planned

    def get_tasks(self, operation) -> list[dict]:
        tasks = operation.tasks.order_by("desktop_name")
        return TaskSerializer(tasks, many=True).data


class DesktopRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class BusyDesktopSerializer(serializers.Serializer):
    desktop = serializers.IntegerField()
    name = serializers.CharField()
    operation = serializers.IntegerField(help_text="The live operation holding it.")


class DryRunSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    kind = serializers.CharField()
    planned = serializers.BooleanField()
    desktops = DesktopRefSerializer(many=True, help_text="What it would act on.")
    busy = BusyDesktopSerializer(many=True, help_text="Skipped: another operation holds them.")
    plan = serializers.JSONField(allow_null=True, help_text="For a planned kind: its plan.")


class PoolCreatedSerializer(serializers.Serializer):
    pool = PoolSerializer()
    operation = OperationResultSerializer(help_text="The provisioning of its desktops.")


class PoolResizeRequestSerializer(serializers.Serializer):
    size = serializers.IntegerField(help_text="The number of desktops the pool is to have.")


class PoolResizedSerializer(serializers.Serializer):
    pool = PoolSerializer()
    operation = OperationResultSerializer(
        allow_null=True,
        help_text="The provisioning of the new desktops, or the delete of the surplus ones; "
        "null when the pool already had that many.",
    )
