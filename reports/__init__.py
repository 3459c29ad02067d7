"""Jinja2 templates of the HTML reports (``reports/templates``), shipped as package data."""
