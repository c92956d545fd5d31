"""/docs in a real browser: headless Chromium (Debian's) renders every operation of /openapi.json.

Playwright drives the system's Chromium (``executable_path``; Playwright's own browser
builds are never downloaded). The screenshot is kept as a CI artifact:
``$ORCHESTRALL_ARTIFACTS/docs.png``, by default ``artifacts/docs.png`` in the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from playwright.async_api import ConsoleMessage, async_playwright

from gateway.openapi import DOCUMENT
from services.cli.stack import Stack

pytestmark = pytest.mark.mesh

ROOT = Path(__file__).resolve().parents[2]
#: Where screenshots go (``make test`` in CI keeps this folder; git ignores ``artifacts/``).
ARTIFACTS = Path(os.environ.get("ORCHESTRALL_ARTIFACTS", ROOT / "artifacts"))
#: Debian's package chromium (``make test`` installs it when missing).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        message = "chromium is not installed (make browser, or apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


async def test_docs_render_every_operation_in_chromium(stack: Stack) -> None:
    _need_chromium()
    document = json.loads(DOCUMENT.read_text())
    operations = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    tags = {tag for item in document["paths"].values() for op in item.values() for tag in op["tags"]}
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":  # a blocked script or style (CSP), a failed fetch
            problems.append(message.text)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", console)
            page.on("pageerror", lambda error: problems.append(str(error)))
            response = await page.goto(f"{stack.config.gateway_url}/docs")
            assert response is not None and response.status == 200
            await page.wait_for_selector(".opblock", timeout=60_000)
            assert await page.locator(".opblock-tag").count() == len(tags)
            # Every operation is one block, with its operationId in the block's id.
            assert await page.locator(".opblock").count() == len(operations)
            ids = await page.locator(".opblock").evaluate_all("blocks => blocks.map(b => b.id)")
            assert {i.rsplit("-", 1)[1] for i in ids} == operations
            # An operation opens with its parameters and its error reasons (x-error-reasons).
            get_agent = page.locator("#operations-AgentService-AgentService_GetAgent")
            await get_agent.locator(".opblock-summary").click()
            await get_agent.locator(".opblock-body").wait_for(timeout=30_000)
            body = await get_agent.locator(".opblock-body").inner_text()
            assert "AGENT_NOT_FOUND" in body and "tenant" in body
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=True)
        finally:
            await browser.close()
    assert problems == []
    assert (ARTIFACTS / "docs.png").stat().st_size > 10_000
