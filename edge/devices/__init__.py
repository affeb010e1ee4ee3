"""Hardware adapters: camera sources and frames, GPIO panel."""
