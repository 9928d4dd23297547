"""The IonMesh protocol without sockets: what each HTTP status means, as one line."""

from __future__ import annotations

import pytest

from remsim_supervisor.core.ionmesh import (
    Exchange,
    IonMeshError,
    IonMeshUnavailable,
    NotRegistered,
    Peer,
    Unauthorized,
    status_error,
)

PEER = Peer("http://10.9.9.9:5000", "/api/backend/v1/remsim", "r", "ONE_TO_ONE_SWSIM", None, True)


def answer(status: int, body: dict[str, str] | None = None) -> Exchange:
    return Exchange(status, 1.0, 100, 100, False, None, body)


def test_a_2xx_is_no_error() -> None:
    assert status_error("heartbeat", answer(200), PEER) is None
    assert status_error("heartbeat", answer(204), PEER) is None


@pytest.mark.parametrize(("name", "status", "kind", "words"), [
    ("heartbeat", 404, NotRegistered, "register again"),
    ("heartbeat", 401, Unauthorized, "check ionmesh.api_key"),
    ("register-client", 503, IonMeshUnavailable, "no SIM slot free"),
    ("heartbeat", 502, IonMeshUnavailable, "server trouble"),
    ("register-client", 400, IonMeshError, "check ionmesh.mapping_mode"),
    ("discover", 404, IonMeshError, "check the path of ionmesh.url"),
    ("heartbeat", 302, IonMeshError, "answered 302 to heartbeat"),
])
def test_each_status_says_what_to_fix(name: str, status: int, kind: type[IonMeshError],
                                      words: str) -> None:
    error = status_error(name, answer(status, {"message": "line one\nline two"}), PEER)
    assert type(error) is kind and words in str(error) and "\n" not in str(error)
    assert error.answered and error.status == status  # the server answered: the path works


def test_without_a_key_a_401_asks_for_one() -> None:
    peer = Peer(PEER.origin, PEER.base_path, "r", "ONE_TO_ONE_SWSIM", None, False)
    assert "set ionmesh.api_key" in str(status_error("heartbeat", answer(401), peer))
