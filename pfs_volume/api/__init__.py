"""The pfs HTTP API (flask, JSON, under /v1/): translation only, no logic.

``app.create_api_app`` builds it; ``starting.create_starting_app`` is what the daemon
serves until it is ready. Nothing is imported here, so that the second costs no import
of the services the first needs (``pfs_volume.daemon_sockets``).
"""
