"""The static "latest updates" report site built from ``runs/`` (see ``site.py``)."""

from paperlab.report.site import build_site

__all__ = ["build_site"]
