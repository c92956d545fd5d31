"""The industry tools, in catalog order (by industry, as the templates list them)."""

from services.agent.catalog import finance, healthcare, logistics, manufacturing, retail, technology
from services.agent.tools import Tool

TOOLS: tuple[Tool, ...] = (
    *finance.TOOLS,
    *healthcare.TOOLS,
    *retail.TOOLS,
    *manufacturing.TOOLS,
    *logistics.TOOLS,
    *technology.TOOLS,
)
