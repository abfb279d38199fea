"""Price tables: what a model's tokens cost, read from a JSON or TOML file.

``fanout run --prices`` and ``fanout eval --prices`` read the same file, mapping model names to
USD per million tokens::

    {"gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6,
                     "cached_input_per_mtok": 0.075}}

``cached_input_per_mtok`` (optional) prices prompt tokens the provider served from its cache.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from .backend import Backend, Prices
from .errors import UserError

__all__ = ["PriceTable", "apply_prices", "load_prices"]


class PriceTable(BaseModel):
    """USD per million tokens for each model name; models not listed cost what the backend says."""

    model_config = ConfigDict(frozen=True)

    models: dict[str, Prices]
    """Model name -> prices."""

    def cost(
        self, model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
    ) -> float | None:
        """The cost of these tokens, or None when `model` is not in the table."""
        prices = self.models.get(model)
        if prices is None:
            return None
        return prices.cost(prompt_tokens, completion_tokens, cached_tokens)


def load_prices(path: str | Path) -> PriceTable:
    """Read a price table (JSON, or TOML by extension) mapping model names to prices.

    For example ``{"gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read price table {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise UserError(f"price table {path} is not valid {kind}: {exc}") from None
    try:
        return PriceTable.model_validate({"models": data})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:])
        raise UserError(f"price table {path}: '{where}': {first['msg']}") from None


def apply_prices(backend: Backend, table: PriceTable, *, source: str | Path) -> Prices:
    """Set `backend`'s prices from `table`, so each call's cost is known as it returns.

    Raises:
        UserError: the table has no entry for the backend's model, or the backend takes no prices.
    """
    prices = table.models.get(backend.name)
    if prices is None:
        listed = ", ".join(sorted(table.models)) or "nothing"
        raise UserError(
            f"price table {source} has no entry for model '{backend.name}' (it lists: {listed})"
        )
    if not hasattr(backend, "prices"):
        raise UserError(f"{type(backend).__name__} does not take prices")
    backend.prices = prices
    return prices
