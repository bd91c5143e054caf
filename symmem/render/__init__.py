"""Renderers: the same report as a text table, JSON, LaTeX or HTML."""
