"""The core: the lane's state machine and its vocabulary, parties, policy, the
passage model. Pure: no I/O, no threads."""
