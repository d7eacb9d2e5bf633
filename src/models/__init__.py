"""Model files: locating, baking and converting Whisper weights."""
