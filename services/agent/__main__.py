"""``python -m services.agent``: runs the agent service."""

from services.agent.server import build
from services.kit.server import main

main(build)
