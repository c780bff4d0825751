"""Commands that run simulated Windows hosts: ``simulate`` and ``demo``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from collector.cli.root import CONTEXT, cli, err, fail
from collector.config import PortfleetConfig
from collector.exitcodes import ExitCode


@cli.command("simulate", context_settings=CONTEXT)
@click.option(
    "--hosts", type=click.IntRange(1, 2000), default=12, show_default=True, help="Simulated hosts."
)
@click.option(
    "--nights",
    type=click.IntRange(10, 365),
    default=60,
    show_default=True,
    help="Nights the model covers.",
)
@click.option(
    "--night",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Night the hosts answer for.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulated fleet.")
@click.option(
    "--https/--http",
    default=True,
    show_default=True,
    help="Serve WinRM over HTTPS (self-signed CA).",
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds per request.",
)
@click.option(
    "--dir",
    "work_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("portfleet-sim"),
    show_default=True,
    help="Where to write the config, the credentials file and the CA certificate.",
)
def simulate_command(
    hosts: int, nights: int, night: int, seed: int, https: bool, latency: float, work_dir: Path
) -> None:
    """Serve simulated Windows hosts over WinRM on loopback until Ctrl-C.

    Writes DIR/config.yaml (hosts, outages of that night included) and DIR/simulate.env (the
    throwaway credentials, readable by you only). In another shell:

    \b
      set -a; . portfleet-sim/simulate.env; set +a
      portfleet --config portfleet-sim/config.yaml --db sim.db collect
    """
    import os
    import signal
    import threading

    import yaml

    from collector.simulator.cluster import SimulatedFleet, fleet_config
    from collector.simulator.fleet import Fleet, FleetSpec

    if night >= nights:
        fail(f"--night {night} is past the model's {nights} nights", ExitCode.USAGE)
    work_dir.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(FleetSpec(seed=seed, hosts=hosts, nights=nights))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SimulatedFleet(fleet, work_dir, lambda: night, https=https, latency=latency) as served:
        addresses = served.addresses()
        checked = PortfleetConfig.model_validate(fleet_config(fleet, addresses, night))
        config = checked.model_dump(mode="json", exclude_none=True)
        if addresses.ca_file:  # relative to the config, as every path in a config is
            ca_file = os.path.relpath(Path(addresses.ca_file).absolute(), work_dir.absolute())
            config["defaults"]["ca_file"] = ca_file
        (work_dir / "config.yaml").write_text(
            yaml.safe_dump(config, sort_keys=False), encoding="utf-8"
        )
        env = work_dir / "simulate.env"
        addresses.write_credentials(env)
        err.print(f"serving {hosts} hosts (night {night}); config: {work_dir / 'config.yaml'}")
        err.print(f"credentials for the collector: {env}")
        err.print("Ctrl-C to stop")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass


@cli.command("demo", context_settings=CONTEXT)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("portfleet-demo"),
    show_default=True,
    help="Folder for the demo database and report.",
)
@click.option(
    "--hosts", type=click.IntRange(8, 200), default=12, show_default=True, help="Simulated hosts."
)
@click.option(
    "--nights",
    type=click.IntRange(1, 365),
    default=60,
    show_default=True,
    help="Nights to collect.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulated fleet.")
def demo_command(out_dir: Path, hosts: int, nights: int, seed: int) -> None:
    """Run the whole pipeline on a simulated fleet, over real WinRM on loopback.

    Simulated Windows hosts in several display languages get updates, reboot, install Docker
    and WSL, and see WinNAT reserve port blocks; one update is planted to cause new
    reservations on the hosts that run Hyper-V. portfleet collects every night into a fresh
    SQLite file, imports the bundled real capture of the seed report, and builds the report.
    """
    from collector.demo import run_demo
    from collector.simulator.fleet import FleetSpec

    run_demo(out_dir, Console(stderr=True), FleetSpec(seed=seed, hosts=hosts, nights=nights))
