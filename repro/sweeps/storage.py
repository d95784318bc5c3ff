"""The Optuna storage URL: its default under ``runs/`` and its printable (password-redacted)
form. Light (no Optuna import): ``repro dashboard`` and the sweep's MLflow records use it too."""

from __future__ import annotations

from repro.paths import runs_dir


def default_storage() -> str:
    return f"sqlite:///{runs_dir() / 'optuna.db'}"


def redact(url: str) -> str:
    """Hide a password in an RDB URL before printing or tagging it."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
