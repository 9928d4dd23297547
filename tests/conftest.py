"""Fixtures shared by the lab tests: the lab network and a real IonMesh in it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from remsim_lab.ionmesh_server import IonMeshServer
from remsim_lab.network import IONMESH, LabNetwork, call_in_netns

LAB_INTERVAL = 3  # heartbeat interval the lab's IonMesh asks for


@pytest.fixture
def net() -> Iterator[LabNetwork]:
    with LabNetwork() as n:
        yield n


@pytest.fixture
def ionmesh(net: LabNetwork) -> Iterator[IonMeshServer]:
    server = call_in_netns(net.cloud, IonMeshServer, host=IONMESH, port=5000,
                           heartbeat_interval=LAB_INTERVAL)
    server.start()
    yield server
    server.stop()
