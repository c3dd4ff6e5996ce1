"""Shared fixtures: real SQLite files, real PostgreSQL when it is up, the seed articles."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from publisher.app import App
from publisher.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
# at least 32 bytes, as load_settings requires of every secret key
TEST_SECRET_KEY = "test-secret-key-for-signing-links-0123456789"
POSTGRES_ADMIN_URL = os.environ.get(
    "PUBLISHER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _postgres_unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'publisher[postgres]')"
    try:
        url = POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
        psycopg.connect(url, connect_timeout=2).close()
    except Exception as exc:  # any failure means: not reachable here
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {str(exc).splitlines()[0]}"
    return None


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    reason = _postgres_unavailable()
    if reason:
        pytest.skip(reason)
    return POSTGRES_ADMIN_URL


def _fresh_postgres_database(admin_url: str) -> Iterator[str]:
    """A new empty database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"publisher_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every store test runs on a real SQLite file and, when it is up, on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'publisher.db'}"
    else:
        yield from _fresh_postgres_database(request.getfixturevalue("postgres_admin_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'publisher.db'}"


def write_config(folder: Path, database_url: str, **extra: str) -> Path:
    """A config file for one test: its own database, inbox, output and secret."""
    lines = [
        f'database_url = "{database_url}"',
        'inbox = "inbox"',
        'output_dir = "public"',
        'base_url = "http://127.0.0.1:8080/"',
        f'secret_key = "{TEST_SECRET_KEY}"',
        *(f"{key} = {value}" for key, value in extra.items()),
    ]
    path = folder / "publisher.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)  # it holds secret_key; 0644 would print a warning
    return path


def with_categories(path: Path, *names: str) -> Path:
    """The config at `path` with these known categories (site.categories), before any
    article of them is stored."""
    with path.open("a", encoding="utf-8") as out:
        out.write(f'\n[site]\ncategories = "{", ".join(names)}"\n')
    return path


@pytest.fixture
def store_app(tmp_path: Path, database_url: str) -> Iterator[App]:
    """An App on an empty inbox, once on SQLite and once on PostgreSQL (when it is up)."""
    (tmp_path / "inbox").mkdir()
    application = App(load_settings(write_config(tmp_path, database_url), environ={}))
    yield application
    application.close()


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """An inbox holding a copy of the five seed articles."""
    folder = tmp_path / "inbox"
    shutil.copytree(SEEDS, folder)
    return folder


@pytest.fixture
def config_file(tmp_path: Path, sqlite_url: str) -> Path:
    return write_config(tmp_path, sqlite_url)


@pytest.fixture
def settings(config_file: Path) -> Settings:
    return load_settings(config_file, environ={})


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    application = App(settings)
    yield application
    application.close()


from tests.dns_server import local_dns  # noqa: E402, F401  (fixture: a real dnslib server)
from tests.smtp_sink import smtp_sink  # noqa: E402, F401  (fixture: a real aiosmtpd server)
