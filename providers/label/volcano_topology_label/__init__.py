"""Label topology provider for volcano-topology: HyperNodes from Node labels."""

from volcano_topology_label.build import Built, analyse, build
from volcano_topology_label.settings import LabelSettings, Level

__all__ = ["Built", "LabelSettings", "Level", "analyse", "build"]
