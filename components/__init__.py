"""Reusable layout pieces (navbar, viewers, tables, forms)."""
