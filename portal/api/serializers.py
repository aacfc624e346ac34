"""How inventory objects, operations and audit events look in the API (read side).

Figures that take a count (desktops by state, use of a datastore, progress of an operation)
are computed once per page by the views (portal/api/inventory.py, operations.py) and handed
to these serializers already attached, so a serializer never runs a query per row."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.models import AuditEvent
from composer.models import DesktopTask, Operation
from pools.models import (
    BaseImage,
    Desktop,
    HypervisorEndpoint,
    ImageVersion,
    PersistentDisk,
    Pool,
    Replica,
)
from pools.states import DesktopState

NULLABLE_INT = {"type": "integer", "nullable": True}


class Ref(serializers.Serializer):
    """Another object, by id and name (the name as it is now)."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)


# -- hypervisor endpoints ----------------------------------------------------------------------


class HypervisorSerializer(serializers.ModelSerializer):
    # The driver's settings are left out: they name where a password is read from, and a
    # driver's own keys are its business (the admin page shows them to administrators).
    class Meta:
        model = HypervisorEndpoint
        fields = [
            "id",
            "name",
            "driver",
            "max_provisioning",
            "max_maintenance",
            "outage_window_seconds",
            "synced_at",
            "sync_error",
        ]
        read_only_fields = fields


# -- datastores ---------------------------------------------------------------------------------


class DatastorePoolSerializer(serializers.Serializer):
    """A pool that selects (or deselected) the datastore, at its own over-commit level."""

    id = serializers.IntegerField(source="link.pool_id")
    name = serializers.CharField(source="link.pool.name")
    overcommit = serializers.IntegerField(
        source="link.overcommit", help_text="The pool's level here; 0 = unbounded."
    )
    selected = serializers.BooleanField(source="link.selected")
    desktops = serializers.IntegerField()


class DatastoreSerializer(serializers.Serializer):
    """A pools.usage.DatastoreUsage: what the Datastores page shows of one datastore."""

    id = serializers.IntegerField(source="datastore.pk")
    name = serializers.CharField(source="datastore.name")
    endpoint = Ref(source="datastore.endpoint")
    ref = serializers.CharField(source="datastore.ref")
    gone = serializers.BooleanField(source="datastore.gone")
    default_overcommit = serializers.IntegerField(
        source="datastore.overcommit", help_text="Offered for new pools; 0 = unbounded."
    )
    capacity_mb = serializers.IntegerField()
    free_mb = serializers.IntegerField(source="datastore.free_mb")
    used_mb = serializers.IntegerField()
    used_percent = serializers.FloatField()
    warn = serializers.BooleanField(help_text="Real use is at or past the warning level (95%).")
    desktops = serializers.IntegerField()
    committed_mb = serializers.IntegerField(
        help_text="Every clone on it counted at its parent disk's full size."
    )
    overcommit = serializers.IntegerField(
        source="factor",
        help_text="The level applied: the strictest of the pools selecting it, else its "
        "default; 0 = unbounded.",
    )
    overcommit_limit_mb = serializers.IntegerField(
        source="limit_mb", allow_null=True, help_text="capacity x level; null when unbounded."
    )
    committed_percent = serializers.FloatField(allow_null=True)
    committed_warn = serializers.BooleanField()
    overcommit_room_mb = serializers.SerializerMethodField(
        help_text="What the over-commit limit still allows (never below 0); null when unbounded."
    )
    pools = DatastorePoolSerializer(many=True)

    @extend_schema_field(NULLABLE_INT)
    def get_overcommit_room_mb(self, row) -> int | None:
        limit = row.limit_mb
        return None if limit is None else max(0, limit - row.committed_mb)


# -- images, versions, replicas -----------------------------------------------------------------


class VersionInImageSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImageVersion
        fields = ["id", "snapshot", "snapshot_ref", "disk_mb", "used_mb", "created_at"]
        read_only_fields = fields


class ImageSerializer(serializers.ModelSerializer):
    endpoint = Ref(read_only=True)
    versions = VersionInImageSerializer(many=True, read_only=True)

    class Meta:
        model = BaseImage
        fields = ["id", "name", "endpoint", "parent_vm", "parent_ref", "description", "versions"]
        read_only_fields = fields


class ImageVersionSerializer(serializers.ModelSerializer):
    image = Ref(read_only=True)
    desktops = serializers.IntegerField(
        source="desktop_count", read_only=True, help_text="Desktops built from it, every pool."
    )
    default_of = Ref(many=True, read_only=True, help_text="Pools that build new desktops from it.")

    class Meta:
        model = ImageVersion
        fields = [
            "id",
            "image",
            "snapshot",
            "snapshot_ref",
            "disk_mb",
            "used_mb",
            "created_at",
            "desktops",
            "default_of",
        ]
        read_only_fields = fields


class ReplicaSerializer(serializers.ModelSerializer):
    image_version = serializers.PrimaryKeyRelatedField(read_only=True)
    datastore = Ref(read_only=True)
    desktops = serializers.IntegerField(
        source="desktop_count", read_only=True, help_text="Desktops reading from it."
    )
    unused = serializers.BooleanField(
        read_only=True,
        help_text="No desktop reads from it and none of its version is on its datastore.",
    )

    class Meta:
        model = Replica
        fields = [
            "id",
            "name",
            "image_version",
            "datastore",
            "status",
            "snapshot",
            "size_mb",
            "error",
            "created_at",
            "desktops",
            "unused",
        ]
        read_only_fields = fields


# -- pools ------------------------------------------------------------------------------------


class PoolDatastoreSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="datastore_id")
    name = serializers.CharField(source="datastore.name")
    overcommit = serializers.IntegerField(help_text="This pool's level there; 0 = unbounded.")
    selected = serializers.BooleanField(
        help_text="False: deselected, to be vacated by a rebalance."
    )


def _state_counts_schema():
    return {
        "type": "object",
        "description": "Desktops by state (every state, 0 included).",
        "properties": {state: {"type": "integer"} for state in DesktopState.values},
    }


@extend_schema_field(_state_counts_schema())
class StateCountsField(serializers.DictField):
    pass


class PoolSerializer(serializers.ModelSerializer):
    endpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    image_version = serializers.PrimaryKeyRelatedField(read_only=True)
    desktops = serializers.IntegerField(source="desktop_total", read_only=True)
    desktops_by_state = StateCountsField(source="desktop_states", read_only=True)
    datastores = PoolDatastoreSerializer(source="datastore_links", many=True, read_only=True)

    class Meta:
        model = Pool
        fields = [
            "id",
            "name",
            "description",
            "endpoint",
            "naming_pattern",
            "size",
            "spares",
            "image_version",
            "domain",
            "persistent_disk_mb",
            "assignment",
            "power_policy",
            "max_concurrent_provisioning",
            "max_concurrent_maintenance",
            "min_ready_desktops",
            "created_at",
            "desktops",
            "desktops_by_state",
            "datastores",
        ]
        read_only_fields = fields


# -- desktops ---------------------------------------------------------------------------------


class DesktopSerializer(serializers.ModelSerializer):
    pool = Ref(read_only=True)
    datastore = Ref(read_only=True)
    image_version = serializers.PrimaryKeyRelatedField(read_only=True)
    replica = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = Desktop
        fields = [
            "id",
            "name",
            "pool",
            "state",
            "reason",
            "missing",
            "task_halted",
            "assigned_user",
            "session_user",
            "datastore",
            "image_version",
            "replica",
            "checkpoint",
            "delta_mb",
            "created_at",
            "state_changed_at",
            "updated_at",
        ]
        read_only_fields = fields


class DiskSerializer(serializers.ModelSerializer):
    datastore = Ref(read_only=True)

    class Meta:
        model = PersistentDisk
        fields = ["id", "name", "datastore", "size_mb", "user", "created_at"]
        read_only_fields = fields


class DesktopDetailSerializer(DesktopSerializer):
    disks = DiskSerializer(many=True, read_only=True)

    class Meta(DesktopSerializer.Meta):
        fields = [*DesktopSerializer.Meta.fields, "disks"]
        read_only_fields = fields


# -- operations -------------------------------------------------------------------------------


class ProgressSerializer(serializers.Serializer):
    """composer.progress.Progress: the operation page's counts."""

    total = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    halted = serializers.IntegerField(help_text="Cancelled or stopped before it was reached.")
    finished = serializers.IntegerField(help_text="Succeeded, failed, halted or skipped.")
    running = serializers.IntegerField()
    dispatched = serializers.IntegerField()
    waiting = serializers.IntegerField(help_text="For a logoff, or for the hypervisor.")
    pending = serializers.IntegerField(help_text="Not handed out yet.")
    percent = serializers.IntegerField()
    paused = serializers.BooleanField()


class OperationSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    pool = serializers.PrimaryKeyRelatedField(
        read_only=True,
        allow_null=True,
        help_text="Null once the pool is deleted; pool_name stays.",
    )
    progress = ProgressSerializer(read_only=True)
    eta_seconds = serializers.SerializerMethodField(
        help_text="Estimated seconds to finish a running operation, from its throughput so "
        "far (as on its page); null when not running or not yet known."
    )

    class Meta:
        model = Operation
        fields = [
            "id",
            "kind",
            "status",
            "pool",
            "pool_name",
            "requested_by",
            "options",
            "scheduled_for",
            "logoff_policy",
            "warning_message",
            "grace_seconds",
            "stop_on_error",
            "urgent",
            "error",
            "requested_at",
            "started_at",
            "prepared_at",
            "finished_at",
            "progress",
            "eta_seconds",
        ]
        read_only_fields = fields

    @extend_schema_field(NULLABLE_INT)
    def get_eta_seconds(self, operation) -> int | None:
        remaining = getattr(operation, "remaining", None)
        return None if remaining is None else round(remaining.total_seconds())


class OperationDetailSerializer(OperationSerializer):
    plan = serializers.JSONField(
        read_only=True, help_text="The frozen plan of a recompose or rebalance ({} if none)."
    )

    class Meta(OperationSerializer.Meta):
        fields = [*OperationSerializer.Meta.fields, "plan"]
        read_only_fields = fields


class OperationDesktopSerializer(serializers.ModelSerializer):
    """One desktop's progress inside an operation."""

    desktop = serializers.PrimaryKeyRelatedField(
        read_only=True,
        allow_null=True,
        help_text="Null once the desktop is deleted; desktop_name stays.",
    )
    target_datastore = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="Where a rebalance moves it."
    )

    class Meta:
        model = DesktopTask
        fields = [
            "id",
            "desktop",
            "desktop_name",
            "status",
            "step",
            "target_datastore",
            "attempts",
            "retry_at",
            "error",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class OperationSummarySerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Operation
        fields = [
            "id",
            "kind",
            "status",
            "pool_name",
            "requested_by",
            "requested_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class DesktopHistorySerializer(serializers.ModelSerializer):
    """What an operation did to a desktop: its task row and the operation."""

    operation = OperationSummarySerializer(read_only=True)

    class Meta:
        model = DesktopTask
        fields = [
            "id",
            "operation",
            "status",
            "step",
            "attempts",
            "error",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


# -- audit log --------------------------------------------------------------------------------


class AuditEventSerializer(serializers.ModelSerializer):
    operation = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "at",
            "actor_name",
            "role",
            "action",
            "target_type",
            "target_id",
            "target_name",
            "outcome",
            "message",
            "parameters",
            "operation",
            "request_id",
            "ip",
            "hash",
        ]
        read_only_fields = fields
