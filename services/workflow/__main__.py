"""``python -m services.workflow``: runs the workflow service."""

from services.kit.server import main
from services.workflow.server import build

main(build)
