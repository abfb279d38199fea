"""The pydantic form of contact.json: `fanout run ... --output-schema examples.schemas.contact:Contact`."""

from pydantic import BaseModel


class Contact(BaseModel):
    name: str
    """The person's full name."""
    role: str
    """Their job, e.g. account manager."""
