"""The router contract (``repro.selftest``), the same one ``repro selftest ROUTER`` runs, over every
registered router: a new router (built in or plugin) is held to it without an edit here."""

from __future__ import annotations

import pytest

from repro.routers import ROUTERS
from repro.selftest import CHECKS, check


@pytest.mark.parametrize("item", list(CHECKS))
@pytest.mark.parametrize("name", ROUTERS.names())
def test_router_contract_item(name, item):
    check(name, item)
