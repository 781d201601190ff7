"""CRLC engine: GUI-free deep image clustering (CRLC, ICCV 2021)."""

__version__ = "0.1.0"
