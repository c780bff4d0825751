"""The ``portfleet`` command: thin click wrappers over the library, data on stdout.

``root`` holds the group and its global options; each other module adds the commands of one
side of the data's walk (see docs/architecture.md).
"""

from collector.cli import answers, inputs, prevent, schema, simulated, watch  # noqa: F401
from collector.cli.root import cli, main

__all__ = ["cli", "main"]
