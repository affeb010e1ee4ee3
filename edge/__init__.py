"""checkpoint-edge: the software of a checkpoint lane kiosk.

A traveller's QR code is read from camera frames, the lane decides (officer or
policy), the barrier moves, and every passage is stored durably and published
over MQTT. See ``docs/architecture.md`` for the layers.
"""

__version__ = "0.1.0"
