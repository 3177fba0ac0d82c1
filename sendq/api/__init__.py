"""The HTTP API (``sendq api``): FastAPI, JSON in and out, errors as RFC 9457 problem documents."""
