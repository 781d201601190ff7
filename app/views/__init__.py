"""Dialogs and views of the desktop application."""
