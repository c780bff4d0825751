"""``portfleet demo``: the whole pipeline on a simulated fleet over real WinRM, plus the seed."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

from rich.console import Console
from sqlalchemy import text

from collector.clock import simulated
from collector.collect import collect
from collector.config import NotifyOptions, PortfleetConfig
from collector.importer import import_paths
from collector.plan import plan_collection
from collector.simulator.cluster import FleetProcess, fleet_config
from collector.simulator.fleet import Fleet, FleetSpec
from collector.store.database import Store

# The seed report's capture (see collector/data/seed/README.md); its time is not known exactly.
SEED_HOST = "seed-workstation"
SEED_TAKEN_AT = datetime.fromisoformat("2018-06-01T12:00:00+02:00")
WANTED_PORTS = (5000, 5001, 5432, 8080, 49786)
# The team's own services behind some wanted ports: when they hold them, that is fine.
WANTED_SERVICES = {5001: "dotnet", 5432: "postgres", 8080: "java"}
# The simulated fleet's story (an update, a Docker upgrade, days between nights) needs three
# nights to unfold; a shorter demo models three and collects only the first ones.
MODEL_NIGHTS = 3
# The hosts' clocks run 400 times as fast: a probe takes 0.11-0.25 s instead of its modelled
# 44-100 s, and an OperationTimeout of 40 s lasts 0.1 s. So every probe spans several Receives
# (the progress record at once, one or two w:TimedOut faults, then the document), as on
# Windows, and 60 nights still take about a minute.
TIME_SCALE = 1 / 400
OPERATION_TIMEOUT = 40
DEMO_FROM = "portfleet@demo.invalid"
DEMO_TO = "it-team@demo.invalid"


@dataclass(frozen=True, slots=True)
class DemoResult:
    """Where the demo put things, and what it took."""

    database: Path
    report: Path | None
    nights: int
    hosts: int
    attempts: int
    snapshots: int
    seconds: float
    mail: Path | None = None  # the digest the loopback mail server received
    config: Path | None = None


def seed_capture_folder() -> Path:
    """Return the folder of the bundled seed capture."""
    return Path(str(resources.files("collector").joinpath("data/seed/capture")))


def run_demo(
    out_dir: Path, console: Console, spec: FleetSpec | None = None, report: bool = True
) -> DemoResult:
    """Collect a simulated fleet every night into a fresh SQLite file, import the seed, report."""
    started = time.monotonic()
    spec = spec or FleetSpec()
    if not spec.prevent_ports:
        # Some hosts deploy the prevent script for the team's ports mid-way (spec.prevent_night),
        # so the nights after show protected hosts beside the others.
        spec = replace(spec, prevent_ports=WANTED_PORTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    database = out_dir / "portfleet.db"
    for stale in out_dir.glob("portfleet.db*"):
        stale.unlink()
    url = f"sqlite:///{database.resolve()}"
    store = Store.open(url)
    model = replace(spec, nights=max(spec.nights, MODEL_NIGHTS))
    fleet = Fleet(model)
    console.print(
        f"simulating {spec.hosts} Windows hosts over {spec.nights} nights (seed {spec.seed}) …"
    )
    if fleet.prevented and spec.prevent_night < spec.nights:
        ports = ", ".join(str(port) for port in spec.prevent_ports)
        console.print(
            f"  {', '.join(fleet.prevented)} run the prevent script for {ports} from night "
            f"{spec.prevent_night + 1} on"
        )
    with (
        tempfile.TemporaryDirectory(prefix="portfleet-demo-") as workdir,
        FleetProcess(model, Path(workdir), https=True, time_scale=TIME_SCALE) as served,
    ):
        assert served.addresses is not None
        served.addresses.export_credentials()
        for night in range(spec.nights):
            served.night = night
            # A loopback fleet answers at once: no need to wait long before retrying a reset.
            config = PortfleetConfig.model_validate(
                fleet_config(
                    fleet,
                    served.addresses,
                    night,
                    collect={"retry_delay_seconds": 0.2},
                    probe={"operation_timeout_seconds": OPERATION_TIMEOUT},
                    # Recorded on each run: a report without the config uses them.
                    wanted_ports=list(WANTED_PORTS),
                    wanted_services=WANTED_SERVICES,
                )
            )
            plan = plan_collection(
                config, [], concurrency=spec.hosts, deadline_seconds=1.5, retries=1, run_kind="demo"
            )
            # Stamp the night's runs and attempts with the simulated night, not today.
            began = min(fleet.collection_time(host, night) for host in fleet.hosts)
            with simulated(began - timedelta(minutes=1)):
                collect(store, config, plan)
            if night % 10 == 9 or night == spec.nights - 1:
                elapsed = time.monotonic() - started
                console.print(f"  night {night + 1}/{spec.nights} collected ({elapsed:.0f} s)")
    # The report's "now" is the morning after the last simulated night, not today's date.
    last_night = max(fleet.collection_time(host, spec.nights - 1) for host in fleet.hosts)
    with simulated(last_night + timedelta(hours=1)):
        _import_seed(store, out_dir)
    report_path = _build_report(url, out_dir, last_night + timedelta(hours=6)) if report else None
    mail = _send_digest(store, out_dir, console)
    attempts, snapshots = _counts(store)
    store.close()
    result = DemoResult(
        database,
        report_path,
        spec.nights,
        spec.hosts,
        attempts,
        snapshots,
        time.monotonic() - started,
        mail,
        _write_config(out_dir, database),
    )
    _print_result(result, console)
    return result


def _import_seed(store: Store, out_dir: Path) -> None:
    capture = out_dir / "seed-capture"
    shutil.rmtree(capture, ignore_errors=True)
    shutil.copytree(seed_capture_folder(), capture)
    (result,) = import_paths(store, [capture], SEED_HOST, SEED_TAKEN_AT)
    if result.outcome == "failed":
        raise RuntimeError(f"the bundled seed capture did not import: {result.message}")


def _build_report(url: str, out_dir: Path, now: datetime) -> Path:
    from reports.report import build_report

    return build_report(
        url, out_dir / "report.html", WANTED_PORTS, now=now, wanted_services=WANTED_SERVICES
    )


def _demo_notify(port: int) -> NotifyOptions:
    """Return the demo's notify: section: one digest to a mail server on loopback."""
    channel = {"name": "demo-mail", "kind": "email", "host": "127.0.0.1", "port": port,
               "security": "none", "from": DEMO_FROM, "to": [DEMO_TO]}  # fmt: skip
    return NotifyOptions.model_validate({"digest": True, "channels": [channel]})


def _send_digest(store: Store, out_dir: Path, console: Console) -> Path | None:
    """Start a mail server on loopback, send it the fleet's digest, return the saved message."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Mailbox

    from collector.notify import notify
    from collector.store.outbox import told
    from reports.alerts import find_events

    maildir = out_dir / "mail"
    shutil.rmtree(maildir, ignore_errors=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = Controller(Mailbox(maildir), hostname="127.0.0.1", port=port)
    server.start()
    try:
        with store.connect() as connection:
            keys = told(connection)
        events = find_events(store, WANTED_PORTS, WANTED_SERVICES, told=keys)
        result = notify(store, _demo_notify(port), events)
    finally:
        server.stop()
    console.print(result.describe())
    saved = sorted((maildir / "new").glob("*")) if (maildir / "new").is_dir() else []
    return saved[-1] if saved else None


def _write_config(out_dir: Path, database: Path) -> Path:
    """Write the config the demo used, for `portfleet --config … notify --dry-run` and friends."""
    path = out_dir / "config.yaml"
    lines = [
        "# What the demo ran with. Its mail server on loopback stopped with the demo.",
        f"database: {database.resolve()}",
        f"wanted_ports: [{', '.join(str(p) for p in WANTED_PORTS)}]",
        "wanted_services: {" + ", ".join(f"{k}: {v}" for k, v in WANTED_SERVICES.items()) + "}",
        "notify:",
        "  digest: true",
        "  channels:",
        "    - {name: demo-mail, kind: email, host: 127.0.0.1, port: 25, security: none,",
        f"       from: {DEMO_FROM}, to: [{DEMO_TO}]}}",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _counts(store: Store) -> tuple[int, int]:
    with store.connect() as connection:
        attempts = connection.execute(text("SELECT COUNT(*) FROM attempts")).scalar_one()
        snapshots = connection.execute(text("SELECT COUNT(*) FROM snapshots")).scalar_one()
    return int(attempts), int(snapshots)


def _print_result(result: DemoResult, console: Console) -> None:
    console.print(
        f"done in {result.seconds:.0f} s: {result.attempts} attempts, {result.snapshots} snapshots "
        f"of {result.hosts} simulated hosts + the seed workstation"
    )
    console.print(f"database: {result.database}")
    if result.report is not None:
        console.print(f"report:   {result.report}")
    if result.mail is not None:
        console.print(f"mail:     {result.mail}  (the digest the loopback mail server received)")
    db = result.database
    console.print(
        f'try:      portfleet --db {db} sql "SELECT host, COUNT(*) FROM v_attempts GROUP BY host"'
    )
    console.print(f"          portfleet --db {db} explain seed-workstation 49786")
    if result.config is not None:
        console.print(f"          portfleet --config {result.config} notify --dry-run")
