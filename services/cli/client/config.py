"""The credential ``orchestrall login`` stores: a file of the user's alone in their config folder.

The folder is ``$XDG_CONFIG_HOME/orchestrall`` (XDG Base Directory Specification 0.8), else
``~/.config/orchestrall``; the file, ``credentials.json``, is created with mode 0600 inside a
0700 folder and replaced atomically, so no other user can read the API key at any moment.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Login:
    """What ``orchestrall login`` remembers.

    Attributes:
        address: The gateway's gRPC address, ``host:port`` (or ``https://host:port``).
        api_key: The API key's secret; each command exchanges it for a short-lived token.
        tenant: The key's tenant, ``tenants/{tenant}``.
        ca_file: The CA that signs the gateway's certificate, when it is not a system CA.
    """

    address: str
    api_key: str
    tenant: str
    ca_file: str | None = None


def config_dir() -> Path:
    """Returns ``$XDG_CONFIG_HOME/orchestrall``, or ``~/.config/orchestrall`` when it is unset or relative."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "orchestrall"


def credentials_file() -> Path:
    """Returns the path of the stored credential."""
    return config_dir() / "credentials.json"


def save(login: Login) -> Path:
    """Writes ``login`` with mode 0600 (the folder 0700) and returns the file's path."""
    path = credentials_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(asdict(login), file, indent=2)
    os.chmod(partial, 0o600)  # an older file of that name may have had other bits
    os.replace(partial, path)
    return path


def load() -> Login | None:
    """Returns the stored credential, or None when there is none."""
    path = credentials_file()
    if not path.exists():
        return None
    return Login(**json.loads(path.read_text()))
