"""The industry tools, in catalog order (by industry, as the templates list them)."""

from services.agent.catalog import finance, healthcare, logistics, manufacturing, retail, technology

TOOLS = (
    *finance.TOOLS,
    *healthcare.TOOLS,
    *retail.TOOLS,
    *manufacturing.TOOLS,
    *logistics.TOOLS,
    *technology.TOOLS,
)
