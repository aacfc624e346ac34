"""Recompose: rebuild each desktop's system disk from an image version (the same or a new
one), keeping its persistent disks; planned and approved first."""

from __future__ import annotations

from django import forms

from composer import plans, steps
from composer.kinds import OperationKind, register
from pools.models import ImageVersion, Pool


@register
class Recompose(OperationKind):
    name = "recompose"
    label = "Recompose"
    order = 30
    on_pool_page = True
    planned = True
    frees_replicas = True
    plan_template = "composer/plans/recompose.html"
    steps = [
        ("wait_for_logoff", steps.wait_for_logoff),
        ("maintenance", steps.maintenance),
        ("power_off", steps.power_off),
        *steps.REBUILD,
    ]

    def form_fields(self, pool):
        return {
            "image_version": forms.ModelChoiceField(
                queryset=ImageVersion.objects.filter(
                    image__endpoint_id=pool.endpoint_id
                ).select_related("image"),
                empty_label=None,
                label="Target image version",
                initial=pool.image_version_id,
            ),
            "set_default": forms.BooleanField(
                required=False,
                label="Make it the pool's default image",
                help_text="New desktops of the pool are then built from this version.",
            ),
        }

    def extra(self, cleaned_data):
        return {
            "image_version": cleaned_data["image_version"].pk,
            "set_default": cleaned_data["set_default"],
        }

    def describe(self, options):
        version = (
            ImageVersion.objects.select_related("image")
            .filter(pk=options.get("image_version"))
            .first()
        )
        default = "becomes this version" if options.get("set_default") else "unchanged"
        return [
            ("Target image version", str(version) if version else "deleted"),
            ("Pool's default image", default),
        ]

    def plan(self, pool, chosen, extra, busy):
        return plans.plan_recompose(pool, chosen, extra["image_version"], busy=busy)

    def check_plan(self, operation):
        return plans.check_recompose(operation)

    def prepare(self, operation):
        if operation.options.get("set_default"):
            Pool.objects.filter(pk=operation.pool_id).update(
                image_version_id=operation.options["image_version"]
            )

    def replica_needed(self, operation, task):
        return int(operation.options["image_version"]), task.desktop.datastore_id

    def target_version(self, operation, desktop):
        version_id = operation.options.get("image_version")
        if not version_id:
            return desktop.image_version
        return ImageVersion.objects.select_related("image").get(pk=version_id)
