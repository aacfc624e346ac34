"""The static files as `make serve` collects them, for tests that run the portal with DEBUG
off: its pages then name the hashed files of collectstatic's manifest."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def collect_static(static_root: Path) -> Path:
    env = {**os.environ, "DEBUG": "false", "SECRET_KEY": "s" * 50, "STATIC_ROOT": str(static_root)}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    return static_root
