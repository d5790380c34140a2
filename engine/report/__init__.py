"""Reports written for people: one self-contained HTML file (see :mod:`engine.report.html`)."""
from .html import HtmlReport

__all__ = ["HtmlReport"]
