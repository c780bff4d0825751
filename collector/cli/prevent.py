"""The ``prevent-script`` command: the script a team deploys to reserve its ports in time."""

from __future__ import annotations

from pathlib import Path

import click

from collector.cli.root import CONTEXT, Settings, cli, err, fail
from collector.exitcodes import ExitCode

INTUNE_FILES = {"detect": "portfleet-detect.ps1", "apply": "portfleet-remediate.ps1"}


@cli.command("prevent-script", context_settings=CONTEXT)
@click.argument("selectors", nargs=-1, metavar="[HOST|PATTERN|@GROUP]...")
@click.option(
    "--port",
    "ports",
    type=click.IntRange(1, 65535),
    multiple=True,
    help="A port to protect (repeatable; else the config's wanted_ports).",
)
@click.option(
    "--variant",
    type=click.Choice(["dry-run", "detect", "apply"]),
    default="dry-run",
    show_default=True,
    help="What the script does when run without switches (apply: a GPO startup script).",
)
@click.option(
    "--intune",
    "intune_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the Intune Remediations pair (detection and remediation) into this folder.",
)
@click.option(
    "--move-dynamic-range",
    "dynamic_start",
    type=click.IntRange(1, 65535),
    metavar="START",
    help="Also move the TCP dynamic port range to START-65535 when applying (read the caveats "
    "it prints first). Without it the script never touches the range.",
)
@click.pass_obj
def prevent_script_command(
    settings: Settings,
    selectors: tuple[str, ...],
    ports: tuple[int, ...],
    variant: str,
    intune_dir: Path | None,
    dynamic_start: int | None,
) -> None:
    """Print the PowerShell script that reserves the wanted ports before Hyper-V takes them.

    On each host it reserves every wanted TCP port that is free as an administered excluded
    range (winnat stopped meanwhile), leaves ports already protected, and refuses ports a
    program holds or a run-time range covers, saying why. A dry run unless -Apply is given;
    -Detect exits 1 while a port is not protected; -IPv6 checks IPv6 too. It prints one JSON
    result and logs to the Application event log (source portfleet).

    With --move-dynamic-range START it also sets the TCP dynamic range to START-65535, where
    Hyper-V/WinNAT reserve, once every wanted port is below START; without it the generated
    script has no code that could change the range.

    \b
    Examples:
      portfleet prevent-script @developers > prevent.ps1
      powershell.exe -NoProfile -ExecutionPolicy Bypass -File prevent.ps1 -Apply
      portfleet prevent-script --intune ./intune --port 5432 --port 8080
      portfleet prevent-script --port 50000 --move-dynamic-range 50001
    """
    from collector.plan import select_hosts
    from collector.prevent import Variant, dynamic_range, prevent_script
    from collector.transport import SelectionError
    from collector.windows import DYNAMIC_MOVE_CAVEATS

    config = settings.config
    hosts: list[str] = []
    if selectors:
        try:
            hosts = [entry.name for entry in select_hosts(config, selectors)]
        except SelectionError as exc:
            fail(str(exc), ExitCode.USAGE)
    wanted = ports or config.wanted_ports
    if not wanted:
        fail("no ports to protect: give --port, or wanted_ports in the config", ExitCode.USAGE)
    if dynamic_start is not None:
        try:
            start, count = dynamic_range(dynamic_start, wanted)
        except ValueError as exc:
            fail(str(exc), ExitCode.USAGE)
        err.print(f"The script will move the TCP dynamic range to {start}-65535 ({count:,} ports).")
        err.print("Before deploying it:")
        for caveat in DYNAMIC_MOVE_CAVEATS:
            err.print(f"  - {caveat}")
    if intune_dir is None:
        click.echo(prevent_script(wanted, Variant(variant), hosts, dynamic_start), nl=False)
        return
    intune_dir.mkdir(parents=True, exist_ok=True)
    for mode, name in INTUNE_FILES.items():
        path = intune_dir / name
        # Intune runs scripts as they are: ASCII with Windows line ends reads the same in 5.1.
        text = prevent_script(wanted, Variant(mode), hosts, dynamic_start).replace("\n", "\r\n")
        path.write_bytes(text.encode("ascii"))
        err.print(f"wrote {path} ({'detection' if mode == 'detect' else 'remediation'} script)")
