"""Fleet management: commands, remote config, signed pushes (device side), and the
operator's tool. Transport-free except :mod:`edge.fleet.agent` and
:mod:`edge.fleet.operator`, which speak MQTT through :mod:`edge.mqtt`."""
