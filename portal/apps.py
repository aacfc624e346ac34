from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self):
        from django.db.models.signals import post_migrate

        from portal import (
            checks,  # noqa: F401 - registers the deploy checks
            time_zones,  # noqa: F401 - copies a user's zone in at sign-in
        )
        from portal.roles import ensure_groups

        # Groups need the permissions that post_migrate creates, so they are made after it,
        # which also makes them appear on a fresh database without a data migration.
        post_migrate.connect(ensure_groups, sender=self)
