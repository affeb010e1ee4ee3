"""The central side: the ingest that stores every device's passages, and tracing."""
