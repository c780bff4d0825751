"""The probe: the PowerShell script run on each Windows host, and its named parameters."""

from __future__ import annotations

from functools import cache
from importlib import resources

# Must equal `$probeVersion` in probe.ps1 (a test holds them together); stored with each snapshot.
PROBE_VERSION = "1.0.0"

# The script's [int] parameter is a 32-bit signed integer.
_INT32_MAX = 2**31 - 1


@cache
def probe_script() -> str:
    """Return the probe script's text (ASCII, as shipped in the package)."""
    return resources.files("collector").joinpath("probe.ps1").read_text(encoding="ascii")


def probe_arguments(
    bind_sweep: bool, sweep_udp: bool, update_history_limit: int
) -> dict[str, object]:
    """Return the probe's named parameters (name without the dash -> value) for these options."""
    if isinstance(update_history_limit, bool) or not 0 <= update_history_limit <= _INT32_MAX:
        raise ValueError(
            f"update_history_limit must be an integer from 0 to {_INT32_MAX}, "
            f"not {update_history_limit!r}"
        )
    return {
        "NoBindSweep": not bind_sweep,
        "SweepUdp": sweep_udp,
        "UpdateHistoryLimit": update_history_limit,
    }
