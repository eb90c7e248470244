from tests.protocol.conftest import api_http  # noqa: F401
