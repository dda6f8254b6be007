"""Turning run directories and validations into tables and figures (matplotlib, no Ray)."""
