"""Check the audit log: `manage.py verify_audit [--checkpoints FILE]`.

Walks the hash chain: every row must match its hash and chain onto the one before. The chain
alone cannot show rows removed from its end (or all of them), nor a chain recomputed from
scratch after an edit; checkpoints do. With --checkpoints (default: AUDIT_CHECKPOINT_FILE)
every earlier checkpoint in the file must still hold: its signature (AUDIT_CHECKPOINT_KEY or
AUDIT_CHECKPOINT_KEY_FILE) is good, the log has at least as many events, and the newest
event then is still there with the same hash at the same position. When all of it holds, a
new checkpoint line is appended (and logged).

Exit code 0 and "OK: N events verified" when all holds; 1 and "TAMPERED: ..." for each thing
that does not (the chain's first broken row first); 2 when the key or file is unusable.
Each run's outcome is also saved (audit.models.VerifyRun) for /metrics to show.
Schedule it (cron, a systemd timer) as a user who can write the file and read the key, on a
host the database's administrators cannot reach.
"""

import logging
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError
from django.utils import timezone

from audit.log import (
    append_checkpoint,
    check_checkpoint,
    checkpoint_key,
    checkpoint_of,
    read_checkpoints,
    verify,
)
from audit.models import VerifyRun

logger = logging.getLogger("portal.audit")


class Command(BaseCommand):
    help = "Verify the audit log's hash chain (and its signed checkpoints) and report tampering."

    def add_arguments(self, parser):
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: default)."
        )
        parser.add_argument(
            "--checkpoints",
            metavar="FILE",
            default=settings.AUDIT_CHECKPOINT_FILE or None,
            help="Check the log against the signed checkpoints in FILE, then append one "
            "(default: AUDIT_CHECKPOINT_FILE; none when unset).",
        )

    def handle(self, *args, **options):
        try:
            result = self.check_log(options)
        except CommandError as exc:
            outcome = (
                VerifyRun.Outcome.UNUSABLE if exc.returncode == 2 else VerifyRun.Outcome.TAMPERED
            )
            self.save_outcome(options["database"], outcome)
            raise
        self.save_outcome(
            options["database"],
            VerifyRun.Outcome.OK,
            events=result.count,
            last_event_id=result.last.pk if result.last is not None else None,
        )

    def save_outcome(self, using: str, outcome: str, **figures) -> None:
        try:
            VerifyRun.objects.using(using).create(outcome=outcome, **figures)
        except DatabaseError as exc:
            # The verdict above stands (exit code, output); only /metrics misses it.
            self.stderr.write(f"outcome not saved for /metrics: {exc}")

    def check_log(self, options):
        path = Path(options["checkpoints"]) if options["checkpoints"] else None
        checkpoints, problems, key = [], [], None
        if path is not None:
            try:
                key = checkpoint_key()
                checkpoints, problems = read_checkpoints(path, key)
            except (ImproperlyConfigured, OSError) as exc:
                raise CommandError(f"cannot use checkpoints: {exc}", returncode=2) from None

        result = verify(
            using=options["database"],
            anchors={c.last_id for c in checkpoints if c.last_id is not None},
        )
        if not result.ok:
            bad = result.bad
            when = timezone.localtime(bad.at).isoformat()
            problems.insert(
                0,
                f"event #{bad.pk} at {when} ({bad.actor_name} {bad.action} {bad.outcome}): "
                f"{result.problem}. {result.count} events before it verified.",
            )
        else:
            # Newest first: the most recent checkpoint says the most; older ones that fail
            # the same way are counted, not repeated.
            failing = [p for p in (check_checkpoint(result, c) for c in checkpoints) if p]
            if failing:
                more = len(failing) - 1
                problems.append(
                    failing[-1] + (f" (and {more} earlier checkpoints)" if more else "")
                )
        if problems:
            raise CommandError("\n".join(f"TAMPERED: {p}" for p in problems))

        self.stdout.write(self.style.SUCCESS(f"OK: {result.count} events verified"))
        if result.last is not None:
            self.stdout.write(f"Last event #{result.last.pk}, hash {result.last.hash}")
        if path is not None:
            try:
                line = append_checkpoint(path, checkpoint_of(result), key)
            except OSError as exc:
                raise CommandError(f"cannot write checkpoint: {exc}", returncode=2) from None
            logger.info("audit checkpoint %s", line)
            self.stdout.write(
                f"Matches the {len(checkpoints)} earlier checkpoints in {path}; checkpoint "
                f"appended."
            )
        return result
