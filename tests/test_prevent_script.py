"""The prevent script, checked without Windows: it parses, and does only what it must."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.cli import cli
from collector.prevent import Variant, dynamic_range, port_ranges, prevent_script
from tests.conftest import import_seed
from tests.test_probe_script import (
    _argument_word,
    _commands,
    _native_name,
    _parse_ps,
    _syntax_problems,
)

# What the script may run: reads, the log and event log it writes, and its own functions.
_ALLOWED = frozenset(
    name.casefold()
    for name in (
        "Add-Content", "ConvertTo-Json", "ForEach-Object", "Get-Date", "Get-NetTCPConnection",
        "Get-Process", "Get-Service", "Join-Path", "New-EventLog", "New-Item", "New-Object",
        "Out-Null", "Set-StrictMode", "Split-Path", "Test-Path", "Where-Object", "Write-EventLog",
        "Write-Verbose",
        "netsh.exe", "net.exe",
        "Add-Reservations", "Get-ExcludedRanges", "Get-Holders", "Get-PortState",
        "Read-Excluded", "Test-Elevated", "Write-PreventLog",
        "Get-DynamicRange", "Get-DynamicState", "Read-Dynamic", "Set-DynamicRange",
    )
)  # fmt: skip


def _problems(source: str, move_dynamic: bool = False) -> list[str]:
    """Commands outside the allow-list, and netsh or net used for anything but the ranges.

    Reading and setting the TCP dynamic range is allowed only in a ``move_dynamic`` copy.
    """
    problems = []
    for command in _commands(_parse_ps(source)):
        where = f"line {command.line}: {command.name!r}"
        words = [_argument_word(argument) for argument in command.arguments]
        native = _native_name(command.name)
        if command.name.casefold() not in _ALLOWED:
            problems.append(f"{where} is not in the allow-list")
        if native == "netsh":
            verbs = [word for word in words if word in ("show", "add", "delete", "set", "reset")]
            excluded = "excludedportrange" in words and verbs in (["show"], ["add"])
            dynamic = (
                move_dynamic
                and words[3:5] == ["dynamicport", "tcp"]
                and (verbs == ["show"] or (verbs == ["set"] and {"start", "num"} <= set(words)))
            )
            if words[:1] != ["int"] or not (excluded or dynamic):
                problems.append(f"{where} does more than show or add an excluded range")
            if "add" in verbs and ("store" not in words or "protocol" not in words):
                problems.append(f"{where} adds a range that would not last, or not for TCP")
        if native == "net" and (len(words) != 2 or words[0] not in ("stop", "start") or
                                words[1] != "winnat"):  # fmt: skip
            problems.append(f"{where} does more than stop or start winnat")
    return problems


@pytest.mark.parametrize("variant", list(Variant))
def test_every_variant_parses_and_keeps_to_the_allow_list(variant: Variant) -> None:
    script = prevent_script([5001, 5432, 8080, 8081], variant, ["dev-ws-01"])
    assert script.isascii()
    assert _syntax_problems(_parse_ps(script)) == []
    assert _problems(script) == []
    assert f"$BakedMode = '{variant.value}'" in script
    assert "$WantedStarts = @(5001, 5432, 8080)" in script
    assert "$WantedCounts = @(1, 1, 2)" in script


@pytest.mark.parametrize("variant", list(Variant))
def test_only_a_copy_asked_to_move_the_dynamic_range_can_touch_it(variant: Variant) -> None:
    plain = prevent_script([5432, 8080], variant)
    assert "dynamicport" not in plain and "$DynamicStart" not in plain
    assert "region" not in plain  # every move-dynamic-range block is cut whole
    moving = prevent_script([5432, 8080], variant, ["dev-ws-01"], dynamic_start=50000)
    assert moving.isascii()
    assert _syntax_problems(_parse_ps(moving)) == []
    assert _problems(moving, move_dynamic=True) == []
    # The same copy fails the plain allow-list: the check sees the code that sets the range.
    refused = _problems(moving)
    assert refused and all("does more than show or add" in problem for problem in refused)
    assert any("set dynamicport tcp start=$DynamicStart num=$DynamicCount" in line
               for line in moving.splitlines())  # fmt: skip
    assert "$DynamicStart = 50000\n$DynamicCount = 15536\n" in moving
    header = moving[: moving.index("#>")]
    assert "moves the TCP dynamic port range to 50000-65535 (15536 ports)" in header
    assert "Windows' default is 16,384" in header  # the caveats travel with the script


def test_the_dynamic_range_to_move_to_must_leave_the_wanted_ports_out() -> None:
    assert dynamic_range(50000, [5432, 49999]) == (50000, 15536)
    assert dynamic_range(65281, [8080]) == (65281, 255)
    with pytest.raises(ValueError, match=r"leaves 254 ports.*start at 65281 or below"):
        dynamic_range(65282, [8080])
    with pytest.raises(ValueError, match=r"wanted port\(s\) 50000, 50010 would be inside"):
        dynamic_range(49152, [5432, 50000, 50010])
    with pytest.raises(ValueError, match="start above 50010"):
        prevent_script([50000, 50010], Variant.APPLY, dynamic_start=49152)


def test_the_command_prints_the_caveats_and_refuses_a_range_over_a_wanted_port(
    tmp_path: Path,
) -> None:
    done = CliRunner().invoke(
        cli, ["prevent-script", "--port", "5432", "--move-dynamic-range", "50000"]
    )
    assert done.exit_code == 0, done.output
    assert "$DynamicStart = 50000" in done.stdout
    assert "move the TCP dynamic range to 50000-65535 (15,536 ports)" in done.stderr
    assert "Ranges Hyper-V/WinNAT reserved before the change stay" in done.stderr
    refused = CliRunner().invoke(
        cli, ["prevent-script", "--port", "50010", "--move-dynamic-range", "50000"]
    )
    assert refused.exit_code == 2 and not refused.stdout
    assert "wanted port(s) 50010 would be inside the new dynamic range" in refused.stderr
    out = tmp_path / "intune"
    pair = CliRunner().invoke(cli, ["prevent-script", "--port", "5432", "--intune", str(out),
                                    "--move-dynamic-range", "50000"])  # fmt: skip
    assert pair.exit_code == 0, pair.output
    for name in ("portfleet-detect.ps1", "portfleet-remediate.ps1"):
        assert b"$DynamicStart = 50000\r\n" in (out / name).read_bytes()


@pytest.mark.parametrize(
    ("snippet", "reason"),
    [
        ("netsh.exe int ipv4 delete excludedportrange protocol=tcp startport=1 numberofports=1",
         "does more than show or add"),
        ("netsh.exe int ipv4 set dynamicport tcp start=10000 num=1000",
         "does more than show or add"),
        ("netsh.exe int ipv4 add excludedportrange protocol=tcp startport=1 numberofports=1",
         "would not last"),
        ("net.exe stop hns", "does more than stop or start winnat"),
        ("Remove-Item C:\\x", "not in the allow-list"),
        ("Restart-Computer", "not in the allow-list"),
    ],
)  # fmt: skip
def test_the_checker_catches(snippet: str, reason: str) -> None:
    assert any(reason in problem for problem in _problems(snippet + "\n"))


def test_ports_merge_into_ranges_and_bad_ones_are_refused() -> None:
    assert port_ranges([8081, 8080, 5432, 8082, 5432]) == [(5432, 1), (8080, 3)]
    with pytest.raises(ValueError, match="outside 1-65535"):
        port_ranges([70000])
    with pytest.raises(ValueError, match="no wanted ports"):
        prevent_script([])


def test_host_names_cannot_close_the_comment_block() -> None:
    script = prevent_script([5432], Variant.APPLY, ["dev-ws-01", "x#>Remove-Item C:\\ -Recurse<#"])
    assert script.count("#>") == 1 and script.count("<#") == 1
    assert _problems(script) == [] and _syntax_problems(_parse_ps(script)) == []


def test_intune_gets_a_detection_and_a_remediation_script(tmp_path: Path) -> None:
    out = tmp_path / "intune"
    done = CliRunner().invoke(
        cli, ["prevent-script", "--intune", str(out), "--port", "5432", "--port", "8080"]
    )
    assert done.exit_code == 0, done.output
    detect = (out / "portfleet-detect.ps1").read_bytes()
    remediate = (out / "portfleet-remediate.ps1").read_bytes()
    assert b"$BakedMode = 'detect'\r\n" in detect
    assert b"$BakedMode = 'apply'\r\n" in remediate
    assert b"\n" not in detect.replace(b"\r\n", b"")


def test_without_ports_the_command_says_where_they_come_from() -> None:
    done = CliRunner().invoke(cli, ["prevent-script"])
    assert done.exit_code == 2
    assert "give --port, or wanted_ports in the config" in done.stderr


def _result(mode: str, applied: bool, **changes: object) -> dict[str, object]:
    """A prevent script's JSON result, as the script builds it."""
    result: dict[str, object] = {
        "format": "portfleet-prevent", "version": 1, "host": "SEED-WORKSTATION",
        "taken_at": "2018-06-02T07:15:03.1234567Z", "mode": mode, "elevated": True,
        "applied": applied, "exit_code": 2,
        "ports": [
            {"start": 5432, "end": 5432, "status": "reserved",
             "reason": "reserved now as an administered range"},
            {"start": 49786, "end": 49786, "status": "needs-hyperv-sequence",
             "reason": "49786-49786 is inside a range Hyper-V/WinNAT reserved at run time"},
        ],
    }  # fmt: skip
    return result | changes


def test_import_takes_what_the_script_reserved_as_fixes(sqlite_url: str, tmp_path: Path) -> None:
    import_seed(sqlite_url)
    applied = tmp_path / "applied.json"
    # Windows PowerShell 5.1 redirects output as UTF-16 with a BOM.
    moved = {
        "family": "ipv4", "start": 50000, "count": 15536, "found_start": 49152,
        "found_count": 16384, "status": "moved", "reason": "moved from 49152-65535",
    }  # fmt: skip
    applied.write_bytes(json.dumps(_result("apply", True, dynamic=[moved])).encode("utf-16"))
    dry = tmp_path / "dry.json"
    dry.write_text(json.dumps(_result("dry-run", False)), encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_result("force", True)), encoding="utf-8")
    done = CliRunner().invoke(cli, ["--db", sqlite_url, "import", str(applied), str(dry), str(bad)])
    assert done.exit_code == 1, done.output  # the bad one failed, the others were kept
    rows = CliRunner().invoke(cli, ["--db", sqlite_url, "sql", "--format", "json",
        "SELECT h.name, x.action, x.start_port, x.end_port, x.recorded_by, x.applied_at "
        "FROM fixes x JOIN hosts h ON h.id = x.host_id WHERE x.source = 'recorded'"])  # fmt: skip
    (fix,) = json.loads(rows.stdout)
    assert (fix["name"], fix["action"], fix["start_port"], fix["end_port"]) == (
        "seed-workstation",
        "reserve",
        5432,
        5432,
    )
    assert fix["recorded_by"] == "prevent script (apply)"
    assert str(fix["applied_at"]).startswith("2018-06-02 07:15:03")
    tries = CliRunner().invoke(cli, ["--db", sqlite_url, "sql", "--format", "json",
        "SELECT source, status, message FROM v_attempts WHERE source LIKE '%.json'"])  # fmt: skip
    by_file = {Path(row["source"]).name: row for row in json.loads(tries.stdout)}
    assert by_file["applied.json"]["status"] == "ok"
    assert (
        "5432: reserved; 49786: needs-hyperv-sequence; dynamic ipv4 50000-65535: moved"
        in by_file["applied.json"]["message"]
    )
    assert by_file["dry.json"]["status"] == "ok"
    assert by_file["bad.json"]["status"] == "failed"
    assert "not a prevent script result (mode:" in by_file["bad.json"]["message"]


def test_a_dry_run_on_a_simulated_host_lists_what_it_would_reserve_and_leave(
    tmp_path: Path,
) -> None:
    import time as clock

    from collector.config import PortfleetConfig
    from collector.prevent import read_prevent_result
    from collector.simulator.cluster import SimulatedFleet, fleet_config
    from collector.simulator.fleet import Fleet, FleetSpec
    from collector.winrm import WinrmTransport

    fleet, night = Fleet(FleetSpec(hosts=8, nights=3)), 1
    # A host with a run-time block, an administered range and a listener of its own.
    name, state = next(
        (host.name, fleet.state(host.name, night))
        for host in fleet.hosts
        if any(not r.administered for r in fleet.state(host.name, night).excluded_tcp)
        and any(r.administered for r in fleet.state(host.name, night).excluded_tcp)
    )
    runtime = next(r for r in state.excluded_tcp if not r.administered and r.end > r.start)
    administered = next(r for r in state.excluded_tcp if r.administered)
    listener = next(i for i in state.listeners if i.protocol == "tcp" and i.port < 1024)
    taken = {p for r in state.excluded_tcp for p in range(r.start, r.end + 1)}
    taken |= {i.port for i in state.listeners}
    free = next(p for p in range(2500, 3000) if p not in taken)
    wanted = [runtime.start + 1, administered.start, listener.port, free]
    with SimulatedFleet(fleet, tmp_path, lambda: night, https=False, time_scale=0) as served:
        addresses = served.addresses()
        addresses.export_credentials()
        config = PortfleetConfig.model_validate(fleet_config(fleet, addresses, night))
        (entry,) = [h for h in config.hosts if h.name == name]
        transport, deadline = WinrmTransport(config), clock.monotonic() + 60
        script = prevent_script(wanted, Variant.DRY_RUN, [name])
        dry = transport.run(entry, script, {}, deadline)
        detect = transport.run(entry, script, {"Detect": True}, deadline)
        # The fleet applies the script at boot (FleetSpec.prevent_ports), never over WinRM.
        applied = transport.run(entry, script, {"Apply": True}, deadline)
        top = max(state.dynamic_tcp[0] + 1, max(wanted) + 1)
        moving = prevent_script(wanted, Variant.DRY_RUN, [name], dynamic_start=top)
        moved_dry = transport.run(entry, moving, {}, deadline)
        moved_detect = transport.run(entry, moving, {"Detect": True}, deadline)
    result = read_prevent_result(dry.stdout, name)
    assert (result.mode, result.applied, result.exit_code) == ("dry-run", False, 2)
    assert dry.exit_code == 2  # a port needs a person
    assert result.host == name.upper()
    by_port = {p.start: p for p in result.ports}
    assert [p.start for p in result.ports] == sorted(wanted)  # one entry per range, in order
    inside = by_port[runtime.start + 1]
    assert inside.status == "needs-hyperv-sequence"
    assert f"({runtime.start}-{runtime.end}, ipv4)" in inside.reason
    assert "turn Hyper-V off" in inside.reason
    assert by_port[administered.start].status == "protected"
    held = by_port[listener.port]
    assert held.status == "held"
    assert f"{listener.process} (PID {listener.pid}) on {listener.port}" in held.reason
    assert (by_port[free].status, by_port[free].reason) == (
        "to-reserve",
        "free: an administered range would keep Hyper-V/WinNAT off it",
    )
    checked = read_prevent_result(detect.stdout, name)
    assert (checked.mode, checked.exit_code) == ("detect", 1)  # a port is not protected
    assert applied.exit_code == 1 and not applied.stdout
    assert b"apply the prevent script at boot" in applied.stderr
    assert result.dynamic is None  # a plain copy never speaks of the dynamic range
    (dynamic,) = read_prevent_result(moved_dry.stdout, name).dynamic or []
    assert (dynamic.family, dynamic.status) == ("ipv4", "to-move")
    assert (dynamic.found_start, dynamic.found_count) == state.dynamic_tcp
    assert (dynamic.start, dynamic.count) == (top, 65536 - top)
    assert f"it would become {top}-65535" in dynamic.reason
    assert moved_dry.exit_code == 2  # the ports that need a person still decide the dry run
    assert read_prevent_result(moved_detect.stdout, name).exit_code == 1
