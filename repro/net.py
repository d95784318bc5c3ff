"""One reachability probe for the services the harness talks to over HTTP (a tracking server,
the Hugging Face hub): fail in seconds with a reason instead of after a client's minutes of
retries."""

from __future__ import annotations


def unreachable(url: str, timeout: float, default_host: str = "localhost") -> str | None:
    """None when a TCP connection to ``url``'s host and port opens within ``timeout`` seconds,
    else ``"host:port: reason"``."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(url)
    host = u.hostname or default_host
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"{host}:{port}: {e.strerror or type(e).__name__}"
    return None
