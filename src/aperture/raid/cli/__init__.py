"""`aperture raid ...`: the RAID desk from the command line.

Commands act as the local operator, or as a person with `--key apk_...` (then the act is theirs,
and they see what they may see: a TLP:RED item only if named on it). Every read command has
`--json`. Text that came from reporters is printed as text, never as console markup.
"""

from __future__ import annotations

from aperture.raid.cli import _exchange  # noqa: F401  (its commands join `app`)
from aperture.raid.cli._commands import app
from aperture.raid.cli._more import advisory_app, contact_app, routing_app

app.add_typer(routing_app, name="routing")
app.add_typer(contact_app, name="contact")
app.add_typer(advisory_app, name="advisory")

__all__ = ["app"]
