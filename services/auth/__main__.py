"""``python -m services.auth``: runs the auth service."""

from services.auth.server import build
from services.kit.server import main

main(build)
