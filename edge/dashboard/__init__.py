"""The control room's dashboard: ``checkpoint-edge dashboard`` (docs/central.md).

``server.py`` (the routes, over the kiosk's HTTP layer), ``query.py`` (what
``/api/summary`` accepts), ``fleet.py`` (the kiosks' live state from the broker),
``cli.py`` (the command), ``static/`` (the page and the vendored chart library).
"""
