from django.core.management.base import BaseCommand

from composer.reconciler import reconcile


class Command(BaseCommand):
    help = "Run the reconciler once (`manage.py runcron` runs it every minute)."

    def handle(self, *args, **options):
        report = reconcile()
        for key, value in report.items():
            self.stdout.write(f"{key}: {value}")
