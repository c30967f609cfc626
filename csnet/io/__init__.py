"""File input/output shared by every layer: atomic writes and robust image decoding."""
