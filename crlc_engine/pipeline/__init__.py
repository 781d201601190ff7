"""Runs from request to stored results: presets, planning, the run driver, estimates."""
