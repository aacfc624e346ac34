"""Settings from the environment: a bad value stops the portal at start, naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def start_django(tmp_path, **env):
    """Run `manage.py check` in a fresh process with exactly these settings variables."""
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    clean.update({"PORTAL_DATA_DIR": str(tmp_path)}, **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://root@localhost/portal"),
        ("DATABASE_URL", "not a url"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("REDIS_URL", "redis://127.0.0.1:notaport/0"),
        ("REDIS_URL", "redis://127.0.0.1:6379/zero"),
        ("DEBUG", "maybe"),
        ("SIMULATOR_STEP_SECONDS", "fast"),
        ("POLL_SECONDS", "0"),
        ("LOG_FORMAT", "xml"),
    ],
)
def test_bad_value_fails_at_start_naming_the_variable(tmp_path, variable, value):
    result = start_django(tmp_path, **{variable: value})
    assert result.returncode != 0
    assert f"Configuration error: {variable}:" in result.stderr
    assert "Traceback" not in result.stderr  # one line (portal/startup.py)


def test_secret_key_is_required_without_debug(tmp_path):
    result = start_django(tmp_path, DEBUG="0", ALLOWED_HOSTS="portal.example")
    assert result.returncode != 0
    assert result.stderr.strip() == "Configuration error: SECRET_KEY: required when DEBUG is off"


def test_secret_key_is_generated_once_into_the_data_folder_in_debug(tmp_path):
    assert start_django(tmp_path, DEBUG="1").returncode == 0
    key = (tmp_path / "secret_key").read_text()
    assert len(key) >= 50
    assert start_django(tmp_path, DEBUG="1").returncode == 0
    assert (tmp_path / "secret_key").read_text() == key


def test_good_production_settings_start(tmp_path):
    result = start_django(
        tmp_path,
        DEBUG="false",
        SECRET_KEY="x" * 50,
        ALLOWED_HOSTS="portal.example,10.0.0.5",
        DATABASE_URL="postgres://portal@db.example:5432/portal",
        REDIS_URL="redis://redis.example:6379/2",
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "secret_key").exists()
