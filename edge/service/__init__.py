"""The kiosk daemon's shell: the wiring (``app``), the lane thread (``runner``), what
the fleet, the screen and alerts read of it (``view``), health, systemd notify,
alerts, the log buffer and ``doctor``."""
