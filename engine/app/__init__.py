"""Loupe App: a local browser dashboard over one workspace (grid, query bar, patches, item view,
insights, metrics, similarity, label fixes), served by the standard library's HTTP server.

Example:
    >>> app = engine.launch_app("loupe.duckdb")     # background thread; returns at once
    >>> app.url
    'http://127.0.0.1:5151/'
    >>> app.stop()
"""
from .server import App, launch_app

__all__ = ["App", "launch_app"]
