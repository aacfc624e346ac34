"""The inventory: hypervisor endpoints, datastores, images, replicas, pools, desktops, disks.

Sizes are whole MiB everywhere; the templates show GiB.
"""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from pools.stamps import Stamped, StampedQuerySet
from pools.states import DesktopState

# Every id is a 64-bit signed integer (BigAutoField). A number beyond that range must not
# reach a query as a value: SQLite cannot even bind it.
MAX_ID = 2**63 - 1


class Overcommit(models.IntegerChoices):
    """Storage over-commit: a datastore holds clones up to capacity x factor (DESIGN.md).

    Each clone counts as the full size of its parent disk. Unbounded has no limit (0 here).
    """

    NONE = 1, "None (1x)"
    CONSERVATIVE = 4, "Conservative (4x)"
    MODERATE = 7, "Moderate (7x)"
    AGGRESSIVE = 15, "Aggressive (15x)"
    UNBOUNDED = 0, "Unbounded"


class HypervisorEndpoint(models.Model):
    """One hypervisor management endpoint (a vCenter, or the simulator).

    What every driver has is a column; what one driver needs (a vCenter's address, user,
    places) is in `settings`, checked against the driver's settings class
    (composer/drivers/registry.py; the admin's form is built from it). The concurrency limits
    hold across every worker for all pools on this endpoint. A password is never stored here:
    the settings name the environment variable or the secret file it is read from, so it
    stays out of the database and the repository.
    """

    name = models.CharField(max_length=100, unique=True)
    # A name in the driver registry (composer/drivers/registry.py): the admin offers those.
    driver = models.CharField(max_length=30, default="simulator")
    settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="The driver's own settings (its settings class names and checks each key).",
    )
    outage_window_seconds = models.PositiveIntegerField(
        "outage window (seconds)",
        default=600,
        help_text="How long a desktop waits for an unreachable or silent hypervisor (its step "
        "is retried with back-off) before it fails.",
    )
    max_provisioning = models.PositiveIntegerField(
        default=8, validators=[MinValueValidator(1)], help_text="Concurrent provisioning steps."
    )
    max_maintenance = models.PositiveIntegerField(
        default=12, validators=[MinValueValidator(1)], help_text="Concurrent maintenance steps."
    )
    # The driver's ids of the places it found (vSphere: datacenter, folder, cluster, pool,
    # hosts, datastores), so each job need not look them up by name again.
    driver_places = models.JSONField(default=dict, blank=True, editable=False)
    # What the last inventory sync found (reconciler, every minute).
    synced_at = models.DateTimeField(null=True, blank=True)
    sync_error = models.TextField(blank=True)
    orphans = models.JSONField(
        default=list,
        blank=True,
        help_text="VMs carrying the portal's marker that no desktop or replica owns.",
    )
    # The token the desktops' agents report sessions with (composer/agent_sessions.py): only
    # its SHA-256 is kept, found by its prefix; shown once when made.
    agent_token_prefix = models.CharField(max_length=16, blank=True, db_index=True, editable=False)
    agent_token_digest = models.CharField(max_length=64, blank=True, editable=False)
    agent_token_created_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self):
        return self.name


# Use (real, or over-commit against its limit) from which a datastore is flagged, on every
# page and in the pool form's warnings. DESIGN.md: warn at 95%; a full datastore suspends
# every VM on it.
WARN_PERCENT = 95.0


class Datastore(models.Model):
    endpoint = models.ForeignKey(
        HypervisorEndpoint, on_delete=models.PROTECT, related_name="datastores"
    )
    name = models.CharField(max_length=100)
    capacity_mb = models.PositiveBigIntegerField()
    # As the hypervisor last reported it; refreshed by inventory sync and after each step.
    free_mb = models.PositiveBigIntegerField()
    ref = models.CharField(max_length=100, blank=True, help_text="The hypervisor's id.")
    gone = models.BooleanField(
        default=False,
        help_text="The hypervisor no longer lists it (last sync): not offered for new "
        "desktops, and a rebalance treats it as deselected.",
    )
    overcommit = models.PositiveSmallIntegerField(
        choices=Overcommit.choices,
        default=Overcommit.CONSERVATIVE,
        help_text="Default over-commit level offered for new pools.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "name"], name="datastore_unique_name"),
        ]

    def __str__(self):
        return self.name

    @property
    def used_mb(self) -> int:
        return self.capacity_mb - self.free_mb

    @property
    def used_percent(self) -> float:
        return 100.0 * self.used_mb / self.capacity_mb if self.capacity_mb else 0.0

    @property
    def warn(self) -> bool:
        return self.used_percent >= WARN_PERCENT


class BaseImage(models.Model):
    """A parent VM; its snapshots are the image versions."""

    endpoint = models.ForeignKey(
        HypervisorEndpoint, on_delete=models.PROTECT, related_name="images"
    )
    name = models.CharField(max_length=100)
    parent_vm = models.CharField(
        max_length=255,
        help_text="The golden image VM: name, path under the datacenter's VM folder, or full "
        "inventory path (needed when two VMs share its name).",
    )
    # The hypervisor's id of the parent VM, once resolved: later lookups use it, not the name.
    parent_ref = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "name"], name="image_unique_name"),
        ]

    def __str__(self):
        return self.name


class ImageVersion(models.Model):
    """A parent VM and one of its snapshots. Kept until no desktop uses it."""

    image = models.ForeignKey(BaseImage, on_delete=models.PROTECT, related_name="versions")
    snapshot = models.CharField(max_length=255)
    snapshot_ref = models.CharField(max_length=100, blank=True)  # the hypervisor's id
    disk_mb = models.PositiveBigIntegerField(
        help_text="Provisioned size of the system disk; each clone counts this much against "
        "the over-commit capacity."
    )
    used_mb = models.PositiveBigIntegerField(help_text="Space a replica really takes.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["image__name", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["image", "snapshot"], name="version_unique_snapshot"),
        ]

    def __str__(self):
        return f"{self.image.name} @ {self.snapshot}"


class Replica(models.Model):
    """A read-only full copy of an image version on one datastore."""

    class Status(models.TextChoices):
        CREATING = "creating", "Creating"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    image_version = models.ForeignKey(
        ImageVersion, on_delete=models.PROTECT, related_name="replicas"
    )
    datastore = models.ForeignKey(Datastore, on_delete=models.PROTECT, related_name="replicas")
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CREATING)
    snapshot = models.CharField(max_length=255, blank=True)
    size_mb = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["image_version", "datastore"], name="replica_one_per_version_datastore"
            ),
        ]

    def __str__(self):
        return self.name


class Pool(models.Model):
    class Assignment(models.TextChoices):
        FLOATING = "floating", "Floating"
        DEDICATED = "dedicated", "Dedicated"

    class PowerPolicy(models.TextChoices):
        ALWAYS_ON = "always_on", "Always powered on"
        OFF = "off", "Powered off until used"

    name = models.CharField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    endpoint = models.ForeignKey(HypervisorEndpoint, on_delete=models.PROTECT, related_name="pools")
    naming_pattern = models.CharField(max_length=64, help_text="For example VDI-{n:fixed=3}.")
    size = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    spares = models.PositiveIntegerField(default=0, help_text="Desktops kept ready and unassigned.")
    image_version = models.ForeignKey(ImageVersion, on_delete=models.PROTECT, related_name="pools")
    datastores = models.ManyToManyField(Datastore, through="PoolDatastore", related_name="pools")
    domain = models.CharField(max_length=255, blank=True, help_text="Domain desktops join.")
    persistent_disk_mb = models.PositiveBigIntegerField(
        default=0, help_text="Size of each desktop's persistent disk; 0 for none."
    )
    assignment = models.CharField(
        max_length=20, choices=Assignment.choices, default=Assignment.FLOATING
    )
    power_policy = models.CharField(
        max_length=20, choices=PowerPolicy.choices, default=PowerPolicy.ALWAYS_ON
    )
    max_concurrent_provisioning = models.PositiveIntegerField(
        default=8, validators=[MinValueValidator(1)]
    )
    max_concurrent_maintenance = models.PositiveIntegerField(
        default=12, validators=[MinValueValidator(1)]
    )
    min_ready_desktops = models.PositiveIntegerField(
        default=0, help_text="Desktops kept ready while maintenance runs."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("run_maintenance", "Can run refresh, recompose, rebalance and delete on pools"),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("pools:detail", args=[self.pk])

    @property
    def ready_state(self) -> str:
        """The state a desktop returns to after an operation, by power policy."""
        if self.power_policy == self.PowerPolicy.ALWAYS_ON:
            return DesktopState.AVAILABLE
        return DesktopState.PROVISIONED


class PoolDatastore(models.Model):
    """A datastore selected (or deselected, to be vacated) for a pool, at an over-commit level."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="pool_datastores")
    datastore = models.ForeignKey(Datastore, on_delete=models.PROTECT, related_name="pool_links")
    overcommit = models.PositiveSmallIntegerField(
        choices=Overcommit.choices, default=Overcommit.CONSERVATIVE
    )
    selected = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pool", "datastore"], name="pool_datastore_unique"),
        ]

    def __str__(self):
        return f"{self.pool} on {self.datastore}"


class DesktopQuerySet(StampedQuerySet):
    def committed_mb_by_datastore(self, datastore_ids=None) -> dict[int, int]:
        """Datastore id -> MiB committed on it: each linked clone counted at the full size of
        its parent disk, whatever its pool (DESIGN.md). What over-commit levels are checked
        against: placement of new desktops, plans, the datastore pages. Datastores without
        desktops are left out; None: every datastore."""
        desktops = self if datastore_ids is None else self.filter(datastore_id__in=datastore_ids)
        return {
            datastore_id: total or 0
            for datastore_id, total in desktops.values_list("datastore_id")
            .annotate(total=models.Sum("image_version__disk_mb"))
            .order_by()
        }


class Desktop(Stamped):
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="desktops")
    name = models.CharField(max_length=15, unique=True)
    state = models.CharField(
        max_length=20, choices=DesktopState.choices, default=DesktopState.PROVISIONING
    )
    reason = models.TextField(blank=True, help_text="Why the desktop is in Error.")
    missing = models.BooleanField(default=False, help_text="The VM is gone from the hypervisor.")
    task_halted = models.BooleanField(
        default=False, help_text="Its operation was stopped before reaching it."
    )
    assigned_user = models.CharField(max_length=150, blank=True)
    session_user = models.CharField(max_length=150, blank=True)
    # When the desktop's agent last reported its session (the report's own time), for
    # hypervisors that cannot tell (pools/sessions.py); None: never.
    session_reported_at = models.DateTimeField(null=True, blank=True)
    # What the agent is asked to do at its next report (show a message, log the user off),
    # put there by maintenance (composer/agent_sessions.py) and handed over once.
    agent_actions = models.JSONField(default=list, blank=True)
    datastore = models.ForeignKey(Datastore, on_delete=models.PROTECT, related_name="desktops")
    replica = models.ForeignKey(
        Replica, on_delete=models.PROTECT, null=True, blank=True, related_name="desktops"
    )
    image_version = models.ForeignKey(
        ImageVersion, on_delete=models.PROTECT, related_name="desktops"
    )
    checkpoint = models.CharField(max_length=255, blank=True)
    delta_mb = models.PositiveBigIntegerField(default=0)
    driver_ref = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    state_changed_at = models.DateTimeField(default=timezone.now)

    objects = DesktopQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        # What the pages filter, sort and count by, so they stay fast with 50,000 desktops
        # (pools/usage.py, portal/inventory_views.py; bench/pages.py times them). Each
        # (pool, x, name) index serves "this pool, sorted by x, then name" without sorting.
        indexes = [
            models.Index(fields=["pool", "state", "name"], name="desktop_pool_state_name"),
            models.Index(fields=["pool", "name"], name="desktop_pool_name"),
            models.Index(fields=["pool", "state_changed_at", "name"], name="desktop_pool_changed"),
            models.Index(fields=["pool", "assigned_user", "name"], name="desktop_pool_user"),
            models.Index(fields=["pool", "datastore", "name"], name="desktop_pool_datastore"),
            # Counts by version, datastore and replica: images and datastores pages, dashboard.
            models.Index(
                fields=["pool", "image_version", "datastore", "replica"], name="desktop_lineage"
            ),
            # The pool page's menus and pager: its desktops counted by state, datastore and
            # version in one pass over this index alone (COUNT(*), no table read).
            models.Index(
                fields=["pool", "state", "datastore", "image_version"], name="desktop_pool_counts"
            ),
            # Problems: Error and stuck desktops by how long they have been so.
            models.Index(fields=["state", "state_changed_at"], name="desktop_state_changed"),
            models.Index(fields=["assigned_user"], name="desktop_assigned_user"),
            models.Index(fields=["session_user"], name="desktop_session_user"),
            models.Index(fields=["pool"], condition=models.Q(missing=True), name="desktop_missing"),
            # The newest change, of a pool and of all: what a live page's version is made of
            # (portal/live.py).
            models.Index(fields=["pool", "updated_at"], name="desktop_pool_updated"),
            models.Index(fields=["updated_at"], name="desktop_updated"),
        ]
        permissions = [
            ("refresh_desktop", "Can refresh a desktop"),
            ("power_desktop", "Can start, shut down and restart a desktop"),
            ("logoff_desktop", "Can log a user off a desktop"),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("pools:desktop", args=[self.pk])


class PersistentDisk(models.Model):
    """A user-data disk. Never deleted unless an administrator asks for it explicitly."""

    name = models.CharField(max_length=255, unique=True)
    pool = models.ForeignKey(
        Pool, on_delete=models.SET_NULL, null=True, blank=True, related_name="disks"
    )
    desktop = models.ForeignKey(
        Desktop, on_delete=models.SET_NULL, null=True, blank=True, related_name="disks"
    )
    datastore = models.ForeignKey(Datastore, on_delete=models.PROTECT, related_name="disks")
    size_mb = models.PositiveBigIntegerField()
    user = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return self.name

    @property
    def attached(self) -> bool:
        return self.desktop_id is not None
