"""Check the audit log's hash chain: `manage.py verify_audit`.

Exit code 0 and "OK: N events verified" when every row matches its hash and chains onto the
one before; exit code 1 naming the first row where the chain breaks otherwise. The chain
cannot show rows removed from its end: keep the printed last hash somewhere else (a ticket,
the change log) to detect that later.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from portal.audit import verify


class Command(BaseCommand):
    help = "Verify the audit log's hash chain and report the first tampered event."

    def add_arguments(self, parser):
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: default)."
        )

    def handle(self, *args, **options):
        result = verify(using=options["database"])
        if not result.ok:
            bad = result.bad
            when = timezone.localtime(bad.at).isoformat()
            raise CommandError(
                f"TAMPERED: event #{bad.pk} at {when} ({bad.actor_name} {bad.action} "
                f"{bad.outcome}): {result.problem}. "
                f"{result.count} events before it verified."
            )
        self.stdout.write(self.style.SUCCESS(f"OK: {result.count} events verified"))
        if result.last is not None:
            self.stdout.write(f"Last event #{result.last.pk}, hash {result.last.hash}")
