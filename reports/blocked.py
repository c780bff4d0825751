"""What is blocked where: failing ports of each host's latest snapshot, grouped into blocks."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, text

_BLOCKS = text(
    """
    SELECT host, classification, MIN(port) AS first_port, MAX(port) AS last_port,
           COUNT(*) AS ports, MIN(error_code) AS error_code, MIN(pid) AS pid,
           MIN(process) AS process, MIN(excluded_known) AS excluded_known,
           MIN(taken_at) AS taken_at
      FROM v_failing_ports
     GROUP BY host, classification, failure_start, excluded_start, pid
     ORDER BY host, MIN(port)
    """
)


@dataclass(frozen=True, slots=True)
class BlockedBlock:
    """Contiguous failing ports of one host that share one explanation."""

    host: str
    classification: str
    first_port: int
    last_port: int
    ports: int
    error_code: int
    pid: int | None
    process: str | None
    excluded_known: bool


def list_blocked(engine: Engine) -> list[BlockedBlock]:
    """Return the failing-port blocks of every host's latest snapshot."""
    with engine.connect() as connection:
        rows = connection.execute(_BLOCKS).all()
    return [
        BlockedBlock(
            host=row.host,
            classification=row.classification,
            first_port=row.first_port,
            last_port=row.last_port,
            ports=row.ports,
            error_code=row.error_code,
            pid=row.pid,
            process=row.process,
            excluded_known=bool(row.excluded_known),
        )
        for row in rows
    ]
