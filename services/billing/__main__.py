"""``python -m services.billing``: runs the billing service."""

from services.billing.server import build
from services.kit.server import main

main(build)
