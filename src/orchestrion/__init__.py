"""orchestrion: a proactive orchestrator.

The public surface is small; everything else lives in modules named by what they own.
"""

from orchestrion.config import Settings, load_settings
from orchestrion.errors import OrchestrionError
from orchestrion.store import Store

__all__ = ["OrchestrionError", "Settings", "Store", "load_settings"]
__version__ = "0.1.0"
