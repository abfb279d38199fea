"""``python -m orchestrator`` is the ``fanout`` command."""

from .cli import main

main()
