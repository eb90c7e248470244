"""The ``pfs`` command: ``pfs serve`` runs the daemon, every other verb calls its API."""
