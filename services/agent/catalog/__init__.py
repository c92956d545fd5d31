"""The industry catalog: agent templates (``templates.yaml``) and the tools behind them.

Each module holds one industry's tools as pure functions with their JSON Schemas
(:class:`services.agent.tools.Tool`); :mod:`services.agent.catalog.registry`
lists them and the built-in catalog (:data:`services.agent.tools.CATALOG`) takes
them in. The tool catalog is imported first here, so that a module of this
package imported on its own finds :class:`~services.agent.tools.Tool` defined.
"""

from services.agent import tools as _tools  # noqa: F401  (see the docstring)
