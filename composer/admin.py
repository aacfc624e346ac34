from django.contrib import admin

from composer import models


class DesktopTaskInline(admin.TabularInline):
    model = models.DesktopTask
    extra = 0
    can_delete = False
    readonly_fields = [
        "desktop",
        "desktop_name",
        "status",
        "step",
        "error",
        "started_at",
        "finished_at",
    ]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(models.Operation)
class OperationAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "pool_name", "status", "requested_by", "requested_at"]
    list_filter = ["kind", "status"]
    readonly_fields = [
        "kind",
        "pool",
        "pool_name",
        "status",
        "requested_by",
        "options",
        "error",
        "requested_at",
        "started_at",
        "prepared_at",
        "finished_at",
    ]
    inlines = [DesktopTaskInline]

    def has_add_permission(self, request):
        return False  # operations start from the portal's forms, which check and audit them


@admin.register(models.DesktopTask)
class DesktopTaskAdmin(admin.ModelAdmin):
    list_display = ["desktop_name", "operation", "status", "step", "finished_at"]
    list_filter = ["status"]
    search_fields = ["desktop_name"]
    readonly_fields = DesktopTaskInline.readonly_fields + ["operation"]

    def has_add_permission(self, request):
        return False


@admin.register(models.HypervisorTask)
class HypervisorTaskAdmin(admin.ModelAdmin):
    """vCenter tasks a step started and has not seen finish (see composer/task_journal.py).
    Read-only: the driver writes and removes them."""

    list_display = ["key", "task_id", "endpoint", "started_at"]
    list_filter = ["endpoint"]
    readonly_fields = ["endpoint", "key", "task_id", "started_at"]

    def has_add_permission(self, request):
        return False
