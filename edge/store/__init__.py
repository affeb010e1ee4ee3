"""The outbox on disk (``outbox``): segment logs, the journal, durable files,
retention, the thread that owns it, and the ``outbox`` command's tool."""
