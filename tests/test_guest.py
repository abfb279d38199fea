"""fanout as a guest in someone else's process: the host's logging stays the host's.

Each case runs a small application in a fresh interpreter (logging and structlog configuration are
process-global, and pytest installs its own handlers), logs the same lines before and after
importing fanout and running a coordinator, and compares them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

APP = textwrap.dedent(
    """
    import logging, sys
    import structlog

    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="APP|%(name)s|%(levelname)s|%(message)s")
    if sys.argv[1] == "configured":
        structlog.configure(
            processors=[structlog.processors.KeyValueRenderer(key_order=["event", "tag"])],
            logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        )
    app_log, app_struct = logging.getLogger("app"), structlog.get_logger("app")

    def emit(tag):
        app_log.warning("stdlib line %s", tag)
        app_struct.warning("structlog line", tag=tag)
        sys.stdout.flush()

    emit("before")
    config = structlog.get_config()
    configured = structlog.is_configured()
    root = (list(logging.root.handlers), logging.root.level)

    from fanout import CallPolicy, Coordinator, Document, Request, ScriptedBackend
    from fanout.agents.errors import BackendRejected

    backend = ScriptedBackend([BackendRejected("no", status_code=400)])
    with Coordinator(backend, synthesis="collect", policy=CallPolicy(max_attempts=1)) as coordinator:
        coordinator.run(Request(documents=[Document(id="a.md", text="A")], question="Q?"), run_id="r")

    emit("after")
    assert structlog.get_config() == config, "structlog configuration changed"
    assert structlog.is_configured() == configured
    assert (list(logging.root.handlers), logging.root.level) == root, "root logger changed"
    print("GUEST-OK")
    """
)


@pytest.mark.parametrize("structlog_setup", ["configured", "default"])
def test_host_logging_is_unchanged_by_fanout(structlog_setup: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", APP, structlog_setup],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # fanout printed nothing of its own, and left nothing unclosed
    lines = proc.stdout.splitlines()
    assert lines[-1] == "GUEST-OK"

    def shape(tag: str) -> list[str]:
        mine = [line for line in lines if tag in line]
        return [re.sub(r"\d", "0", line.replace(tag, "TAG")) for line in mine]

    assert len(shape("before")) == 2
    assert shape("after") == shape("before")
    # fanout's own warning reached the application's handler, as one plain line
    fanout_lines = [line for line in lines if line.startswith("APP|fanout.")]
    assert len(fanout_lines) == 1
    assert fanout_lines[0].startswith("APP|fanout.orchestrator.policy|WARNING|sub_agent.call ")
