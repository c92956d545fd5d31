"""The gateway's API documentation: ``/openapi.json`` and Swagger UI at ``/docs``.

Envoy serves all of it itself (``direct_response``), with no token: the document
(:mod:`gateway.openapi`, ``gen/openapi.json``), a small page of our own, and Swagger UI's
files from the ``swagger-ui-bundle`` package, never from a CDN. The page loads only
same-origin scripts (its initializer is a file too), so it is served with a Content
Security Policy that allows no inline script.

Usage (what :func:`gateway.envoy.render.render` takes)::

    routes = docs_routes(DocsFiles.installed(ROOT / "gen" / "openapi.json"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import swagger_ui_bundle

#: Where the page is.
DOCS_PATH = "/docs"
#: Where the OpenAPI document is.
OPENAPI_PATH = "/openapi.json"
#: Swagger UI's files the page uses, by the name it is served under ``/docs/``.
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
#: Envoy's cap on a direct response body (``max_direct_response_body_size_bytes``, default 4 KiB):
#: above Swagger UI's bundle (about 1 MiB) and the document; a test checks every file is below it.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Scripts and styles from this origin only; Swagger UI sets inline styles and shows data: images.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Orchestrall API</title>
<link rel="stylesheet" href="{DOCS_PATH}/swagger-ui.css">
<link rel="icon" type="image/png" href="{DOCS_PATH}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS_PATH}/swagger-ui-bundle.js"></script>
<script src="{DOCS_PATH}/init.js"></script>
</body>
</html>
"""

# Swagger UI's own initializer, pointed at our document; "Try it out" sends the bearer token
# the user enters under "Authorize" (the document's bearerAuth scheme). Extensions are shown:
# each operation's x-error-reasons.
_INIT = f"""window.ui = SwaggerUIBundle({{
  url: "{OPENAPI_PATH}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
  showExtensions: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}});
"""


@dataclass(frozen=True)
class DocsFiles:
    """Where the documentation's files are on the gateway's machine (or in its image).

    Attributes:
        openapi: The OpenAPI document (``gen/openapi.json``).
        assets: Swagger UI's ``dist`` folder.
    """

    openapi: Path
    assets: Path

    @classmethod
    def installed(cls, openapi: Path) -> DocsFiles:
        """Returns the files with Swagger UI from this interpreter's ``swagger-ui-bundle``."""
        return cls(openapi, Path(str(swagger_ui_bundle.swagger_ui_path)))


@dataclass(frozen=True)
class DocsRoute:
    """One documentation route: an exact path and what Envoy answers it with.

    Attributes:
        path: The request path.
        content_type: The response's ``Content-Type``.
        filename: A file Envoy reads at start-up, or None.
        inline: The body itself when ``filename`` is None.
    """

    path: str
    content_type: str
    filename: str | None = None
    inline: str | None = None


def docs_routes(files: DocsFiles) -> list[DocsRoute]:
    """Returns the routes of ``/openapi.json``, ``/docs`` and the page's files."""
    routes = [
        DocsRoute(OPENAPI_PATH, "application/json", filename=str(files.openapi)),
        DocsRoute(DOCS_PATH, "text/html; charset=utf-8", inline=_PAGE),
        DocsRoute(f"{DOCS_PATH}/init.js", "text/javascript; charset=utf-8", inline=_INIT),
    ]
    routes += [
        DocsRoute(f"{DOCS_PATH}/{name}", content_type, filename=str(files.assets / name))
        for name, content_type in ASSETS.items()
    ]
    return routes
