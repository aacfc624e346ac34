"""`manage.py runcron`: the reconciler every minute (composer/cron.py), surviving Redis
outages (composer/cron_scheduler.py). Run one per site; a second is harmless."""

import logging

from django.core.management.base import BaseCommand

from composer.cron_scheduler import ReconnectingCronScheduler


class Command(BaseCommand):
    help = "Run the portal's periodic jobs (the reconciler) until stopped."

    def add_arguments(self, parser):
        parser.add_argument(
            "--logging-level",
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            default="INFO",
        )

    def handle(self, *args, logging_level: str, **options):
        scheduler = ReconnectingCronScheduler(logging_level=getattr(logging, logging_level))
        scheduler.load_config_from_file("composer.cron")
        scheduler.start()
