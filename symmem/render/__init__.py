"""Renderers: the same report as a text table or as JSON."""
