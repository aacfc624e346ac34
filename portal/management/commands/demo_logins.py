"""`manage.py demo_logins`: the demo's user names and passwords again (`make run` prints them
when it starts, and they scroll away)."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal.management.commands.demo_data import LOGINS_FILE


def demo_logins(data_dir: Path) -> list[str]:
    """The banner's lines for the demo logins, or none without demo data."""
    path = Path(data_dir) / LOGINS_FILE
    if not path.exists():
        return []
    logins = json.loads(path.read_text())
    return ["Demo logins:", *(f"  {user:<9} {password}" for user, password in logins.items())]


class Command(BaseCommand):
    help = "Print the demo's user names and passwords."

    def handle(self, *args, **options):
        lines = demo_logins(settings.DATA_DIR)
        if not lines:
            raise CommandError(
                f"No demo logins in {settings.DATA_DIR}: `make run` loads the demo the first time."
            )
        self.stdout.write("\n".join(lines))
