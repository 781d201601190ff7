"""CRLC Organizer desktop application (PySide6), a thin shell over ``crlc_engine``."""
