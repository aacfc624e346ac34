from django.contrib import admin

from pools import models

# The endpoint's admin is in portal/admin.py: its form is built from the driver registry
# (composer/drivers), which the inventory does not import.


@admin.register(models.Datastore)
class DatastoreAdmin(admin.ModelAdmin):
    list_display = ["name", "endpoint", "capacity_mb", "free_mb", "overcommit"]
    list_filter = ["endpoint"]


class ImageVersionInline(admin.TabularInline):
    """Versions are registered on the Images page, which asks the hypervisor whether the
    snapshot exists and for its sizes (composer/images.py); here they are only shown."""

    model = models.ImageVersion
    extra = 0
    fields = readonly_fields = ["snapshot", "snapshot_ref", "disk_mb", "used_mb", "created_at"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(models.BaseImage)
class BaseImageAdmin(admin.ModelAdmin):
    list_display = ["name", "parent_vm", "endpoint"]
    readonly_fields = ["parent_ref"]
    inlines = [ImageVersionInline]


@admin.register(models.ImageVersion)
class ImageVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "disk_mb", "used_mb", "created_at"]
    readonly_fields = ["image", "snapshot", "snapshot_ref", "disk_mb", "used_mb", "created_at"]

    def has_add_permission(self, request):
        return False  # registered on the Images page, checked in the hypervisor


@admin.register(models.Replica)
class ReplicaAdmin(admin.ModelAdmin):
    list_display = ["name", "image_version", "datastore", "status"]
    list_filter = ["status", "datastore"]


class PoolDatastoreInline(admin.TabularInline):
    model = models.PoolDatastore
    extra = 0


@admin.register(models.Pool)
class PoolAdmin(admin.ModelAdmin):
    list_display = ["name", "size", "image_version", "power_policy", "assignment"]
    inlines = [PoolDatastoreInline]


@admin.register(models.Desktop)
class DesktopAdmin(admin.ModelAdmin):
    list_display = ["name", "pool", "state", "datastore", "assigned_user", "missing"]
    list_filter = ["state", "pool", "datastore", "missing"]
    search_fields = ["name", "assigned_user", "session_user"]
    # State changes must go through the state machine (pools/states.py), not a form.
    readonly_fields = ["state", "reason", "state_changed_at"]


@admin.register(models.PersistentDisk)
class PersistentDiskAdmin(admin.ModelAdmin):
    list_display = ["name", "pool", "desktop", "datastore", "size_mb", "user"]


@admin.register(models.PoolDatastore)
class PoolDatastoreAdmin(admin.ModelAdmin):
    list_display = ["pool", "datastore", "overcommit", "selected"]
