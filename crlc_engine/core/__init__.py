"""Foundations every room uses: errors, events, job control, devices, files, settings,
neighbours."""
