"""A port for a test's server to listen on: `core.ports.free_port` (why not port 0: there)."""
from causalmix.core.ports import HIGH, LOW, free_port

__all__ = ["HIGH", "LOW", "free_port"]
