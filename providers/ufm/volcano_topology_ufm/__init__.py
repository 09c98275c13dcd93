"""NVIDIA UFM topology provider: host ports, links and systems from UFM's REST API, every switch tier as HyperNodes."""

from volcano_topology_ufm.provider import UFMProvider
from volcano_topology_ufm.settings import UFMSettings

__all__ = ["UFMProvider", "UFMSettings"]
