"""A client of the pfs HTTP API, over the daemon's unix socket or plain HTTP."""

from __future__ import annotations

import io
from typing import IO, Any
from urllib.parse import quote

import requests
import requests_unixsocket

from pfs_volume.errors import PfsError, error_from_code

REQUEST_TIMEOUT = 120.0


class ApiClient:
    """Calls ``/v1/...`` on a daemon.

    Args:
        address: a unix socket path (``/run/pfs/api.sock``) or an ``http://`` URL.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        if address.startswith(("http://", "https://")):
            self.base = address.rstrip("/")
            self.session: requests.Session = requests.Session()
        else:
            self.base = "http+unix://" + quote(address, safe="")
            self.session = requests_unixsocket.Session()  # type: ignore[no-untyped-call]

    def request(self, method: str, route: str, /, **params: Any) -> Any:
        """Call the API and return the decoded JSON body.

        Raises:
            PfsError: (the matching subclass) for an error the daemon reported, or when
                the daemon cannot be reached.
        """
        body = params.pop("json", None)
        raw = params.pop("data", None)
        query = {k: v for k, v in params.items() if v is not None}
        try:
            response = self.session.request(
                method,
                self.base + route,
                params=query,
                json=body,
                data=raw,
                timeout=REQUEST_TIMEOUT,
            )
        except requests.RequestException as exc:
            raise PfsError(
                f"cannot reach the pfs daemon at {self.address} ({exc.__class__.__name__}); "
                "is 'pfs serve' running? --api or PFS_API point elsewhere"
            ) from exc
        try:
            body = response.json()
        except ValueError:
            raise PfsError(
                f"the daemon at {self.address} answered {response.status_code} without JSON"
            ) from None
        if response.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise error_from_code(error.get("code", ""), error.get("message", str(body)))
        return body

    def stream(
        self,
        method: str,
        route: str,
        /,
        data: IO[bytes] | io.RawIOBase | None = None,
        timeout: float = REQUEST_TIMEOUT,
        **params: Any,
    ) -> requests.Response:
        """Call the API for a binary answer (or with a streamed body); the open response.
        ``timeout`` bounds the wait for each read (a followed log may be quiet longer).

        Raises:
            PfsError: as ``request``.
        """
        query = {k: v for k, v in params.items() if v is not None}
        try:
            response = self.session.request(
                method,
                self.base + route,
                params=query,
                data=data,
                stream=True,
                timeout=timeout,
            )
        except requests.RequestException as exc:
            raise PfsError(
                f"cannot reach the pfs daemon at {self.address} ({exc.__class__.__name__})"
            ) from exc
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            raise error_from_code(error.get("code", ""), error.get("message", response.reason))
        return response

    def get(self, route: str, /, **params: Any) -> Any:
        """GET ``route``."""
        return self.request("GET", route, **params)

    def delete(self, route: str, /, **params: Any) -> Any:
        """DELETE ``route``."""
        return self.request("DELETE", route, **params)
