"""``python -m collector.cli``: the ``portfleet`` command."""

from collector.cli import main

main()
