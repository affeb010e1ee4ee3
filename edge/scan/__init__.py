"""From frames to credentials: decoders, the scanner, format recognition."""
