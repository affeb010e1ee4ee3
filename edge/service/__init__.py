"""The kiosk daemon's shell: the wiring (``app``), the lane thread (``runner``),
health, systemd notify, alerts, the log buffer and ``doctor``."""
