"""The MQTT adapter: the only part of the package that knows topics and paho."""
