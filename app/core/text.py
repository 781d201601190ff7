"""Wording helpers for the window's messages (counts with their noun, rich-text escaping)."""

from __future__ import annotations

__all__ = ["escape", "plural"]


def plural(count: int, word: str) -> str:
    """``count`` with ``word``, pluralised with an "s" unless one: ``1 file``, ``2,000 files``."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def escape(text: str) -> str:
    """``text`` safe inside Qt rich text (``&``, ``<`` and ``>`` escaped)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
