"""The kiosk's screen: state (screen.py), officer sessions (auth.py), the web server
(server.py), its pages (static/) and message catalogues (i18n/)."""
