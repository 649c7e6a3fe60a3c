"""Running plans across processes and machines: remote edge servers (HTTP), Ray actors, faults.

Submodules are imported on demand (``megen.runtime.server``, ``megen.runtime.http_executor``,
``megen.runtime.ray_executor`` ...) so that ``import megen.runtime`` pulls in neither FastAPI nor Ray.
"""

from megen.runtime.errors import NodeUnavailable

__all__ = ["NodeUnavailable"]
