"""Telling systemd how start-up goes (``Type=notify`` units: contrib/systemd/).

When systemd runs the daemon it names a datagram socket in NOTIFY_SOCKET. ``READY=1``
goes out as soon as both sockets listen (Docker may start then: it gets answers), each
start-up step as ``STATUS=`` (``systemctl status pfs`` shows it), ``STOPPING=1`` on stop.
Without NOTIFY_SOCKET every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

ENV = "NOTIFY_SOCKET"


def notify(*fields: str) -> None:
    """Send ``fields`` (``READY=1``, ``STATUS=...``) to systemd, when it runs pfs."""
    address = os.environ.get(ENV)
    if not address:
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto("\n".join(fields).encode(), address)
        except OSError as exc:
            log.warning("systemd's notify socket %s: %s", address, exc)
