"""Keys kept out of text: what a provider echoes back in an error, or a trace would show."""

from __future__ import annotations


def redact(text: str, key: str) -> str:
    """Remove a key, and any long piece of it a provider may echo back, from text."""
    if not key or not text:
        return text
    text = text.replace(key, "[redacted]")
    # Providers echo fragments like "sk-abc***xyz"; hide any 8+ character run of the key.
    if len(key) >= 16:
        for size in (16, 12, 8):
            for start in range(0, len(key) - size + 1):
                piece = key[start : start + size]
                if piece in text:
                    text = text.replace(piece, "[redacted]")
    return text
