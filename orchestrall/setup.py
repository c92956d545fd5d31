"""Where the SDK distribution's two parts are: its packages cannot be found by name alone.

``orchestrall.sdk`` is hand-written (``./sdk``); ``orchestrall.sdk.proto`` and its subpackages
are generated (``../gen/orchestrall/sdk/proto``). Discovery over both roots would map the whole
of ``orchestrall.sdk`` to one of them, so the packages and their folders are listed here. The
metadata is in ``pyproject.toml``.
"""

from setuptools import find_namespace_packages, setup

GENERATED = "../gen/orchestrall/sdk/proto"

setup(
    packages=[
        "orchestrall.sdk",
        "orchestrall.sdk.proto",
        *(f"orchestrall.sdk.proto.{name}" for name in find_namespace_packages(GENERATED)),
    ],
    package_dir={"orchestrall.sdk": "sdk", "orchestrall.sdk.proto": GENERATED},
    package_data={"orchestrall.sdk.proto": ["py.typed"]},
)
