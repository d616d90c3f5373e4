"""A PostgreSQL instance backed up with pg_dump and restored with pg_restore into an empty database."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from aperture.bootstrap import Services


@pytest.mark.skipif(
    not os.environ.get("APERTURE_TEST_DATABASE_URL") or shutil.which("pg_dump") is None,
    reason="needs APERTURE_TEST_DATABASE_URL and the PostgreSQL client tools",
)
def test_postgresql_backup_restores_into_an_empty_database(
    filled: Services, run: object, tmp_path: Path, database_url: str | None
) -> None:
    import secrets
    from urllib.parse import parse_qs, urlsplit

    from sqlalchemy import create_engine, make_url, text

    from aperture.core.db import normalise_url

    invoke = run  # type: ignore[assignment]
    assert database_url is not None
    result = invoke("backup", str(tmp_path / "b"), "--keys-to", str(tmp_path / "k"), "--json")  # type: ignore[operator]
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["database"] == "postgresql"
    schema = parse_qs(urlsplit(database_url).query)["options"][0].removeprefix("-csearch_path=")
    name = "r_" + secrets.token_hex(6)
    base = os.environ["APERTURE_TEST_DATABASE_URL"]
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    target = make_url(base).set(database=name, query={"options": f"-csearch_path={schema}"})
    try:
        result = invoke(  # type: ignore[operator]
            "restore",
            str(tmp_path / "b"),
            "--home",
            str(tmp_path / "new"),
            "--keys-from",
            str(tmp_path / "k"),
            "--database-url",
            target.render_as_string(hide_password=False),
        )
        assert result.exit_code == 0, result.output
        assert "audit verify: OK" in result.stdout and "models verify m:1: OK" in result.stdout
        result = invoke(  # type: ignore[operator]
            "restore",
            str(tmp_path / "b"),
            "--home",
            str(tmp_path / "again"),
            "--keys-from",
            str(tmp_path / "k"),
            "--database-url",
            target.render_as_string(hide_password=False),
        )
        assert result.exit_code != 0 and "already has" in result.output
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
