"""``python -m services.flag``: runs the flag service."""

from services.flag.server import build
from services.kit.server import main

main(build)
