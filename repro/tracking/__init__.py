from repro.tracking import store
from repro.tracking.store import TrackingError, resolve_uri

__all__ = ["TrackingError", "resolve_uri", "store"]
