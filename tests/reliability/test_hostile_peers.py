"""Hostile DICOM peers against a real embedded gateway (`pulmogate up`): each attack of
issue 11 replayed with raw sockets and pynetdicom while the known PACS (AE ``PACS`` on
127.0.0.1, named by a rule) C-ECHOes and C-STOREs, and the gateway's RSS is sampled.

The gateway runs with the looser source policy (``ACCEPT_ECHO_FROM_UNKNOWN=true``: unknown
peers get Verification associations, the worst case for these attacks) and short
timeouts so the slow attacks end quickly.
"""

import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.fixtures.gateway import Gateway, add_route, run_gateway
from tests.fixtures.infra import free_port
from tests.reliability.dicom_attacks import (
    PacsVisit,
    SlowLoris,
    associate_rq,
    closed_within,
    connect_from,
    flood,
    open_many,
    p_data_command_fragments,
    pacs_visit,
    peak_rss,
    raw_association,
    refused_counts,
)

REQUEST_TIMEOUT_S = 3
IDLE_TIMEOUT_S = 5
RSS_BOUND_MB = 64  # docs/security.md: growth of the gateway's RSS during any of these attacks
FLOOD_MB = 300
ATTACKERS = 4


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One embedded gateway for the module, a rule naming the PACS by AE title and address."""
    env = {
        "PULMOGATE_ACCEPT_FROM": "rules",
        "PULMOGATE_ACCEPT_ECHO_FROM_UNKNOWN": "true",
        "PULMOGATE_DICOM_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S),
        "PULMOGATE_DICOM_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
    }
    tmp: Path = tmp_path_factory.mktemp("hostile")
    with run_gateway(tmp, [["up"]], extra_env=env) as gw:
        # No failure notices: the PACS's one-slice visits are refused, and building a notice
        # page in this same process would count in the RSS bound of the receiver's edge.
        add_route(
            gw,
            free_port(),
            name="pacs",
            source_ae_title="PACS",
            source_ip="127.0.0.1",
            failure_notices=False,
        )
        assert pacs_visit(gw.dicom_port).served
        yield gw


def _pid(gw: Gateway) -> int:
    return gw.processes["up"].pid


def _visits_during(gw: Gateway, attack: Any, *, visits: int = 3) -> tuple[Any, list[PacsVisit]]:
    """Run ``attack()`` in a thread while the PACS visits the gateway ``visits`` times."""
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(attack)
        seen = []
        for _ in range(visits):
            seen.append(pacs_visit(gw.dicom_port))
            time.sleep(0.3)
        return running.result(timeout=300), seen


def test_p_data_longer_than_advertised_aborts_and_memory_stays_bounded(gateway: Gateway) -> None:
    before = refused_counts(gateway.api)
    huge = struct.pack(">BBL", 0x04, 0, 0xFFFFFFFF)

    def attack() -> list[int]:
        socks = [raw_association("127.0.0.2", gateway.dicom_port, "INTRUDER") for _ in range(4)]
        with ThreadPoolExecutor(len(socks)) as pool:
            return list(pool.map(lambda s: flood(s, huge, FLOOD_MB << 20), socks))

    with peak_rss(_pid(gateway)) as rss:
        taken, visits = _visits_during(gateway, attack)
    after = refused_counts(gateway.api)
    assert all(v.served for v in visits), visits
    assert all(t < 32 << 20 for t in taken), taken  # the socket buffers, not the 300 MB
    assert rss[1] - rss[0] < RSS_BOUND_MB, rss
    assert after.get("pdu_too_long", 0) - before.get("pdu_too_long", 0) == ATTACKERS
    gateway.assert_alive()


def test_an_association_request_of_length_0xffffffff_is_refused_before_it_is_read(
    gateway: Gateway,
) -> None:
    before = refused_counts(gateway.api).get("control_pdu_too_long", 0)
    huge_request = struct.pack(">BBL", 0x01, 0, 0xFFFFFFFF)
    with peak_rss(_pid(gateway)) as rss:
        taken, visits = _visits_during(
            gateway,
            lambda: flood(connect_from("127.0.0.2", gateway.dicom_port), huge_request, 200 << 20),
        )
    assert all(v.served for v in visits), visits
    assert taken < 32 << 20 and rss[1] - rss[0] < RSS_BOUND_MB, (taken, rss)
    assert refused_counts(gateway.api).get("control_pdu_too_long", 0) - before == 1


def test_an_endless_dimse_command_is_aborted_after_64_kib(gateway: Gateway) -> None:
    """Small PDUs within the length limit, one command that never ends."""
    before = refused_counts(gateway.api).get("message_too_long", 0)
    sock = raw_association("127.0.0.2", gateway.dicom_port, "INTRUDER")
    fragment = p_data_command_fragments()
    sent = 0
    try:
        while sent < 100 << 20:
            sock.sendall(fragment)
            sent += len(fragment)
    except OSError:
        pass
    finally:
        sock.close()
    assert sent < 32 << 20, sent
    assert refused_counts(gateway.api).get("message_too_long", 0) - before == 1
    assert pacs_visit(gateway.dicom_port).served


def test_seventy_associations_from_an_unknown_ae_leave_the_pacs_served(gateway: Gateway) -> None:
    held: list[Any] = []

    def intruder(_: int) -> bool:
        ae = AE(ae_title="INTRUDER")
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.network_timeout = 10
        assoc = ae.associate(
            "127.0.0.1", gateway.dicom_port, ae_title="PULMOGATE", bind_address=("127.0.0.3", 0)
        )
        if assoc.is_established:
            held.append(assoc)
        return bool(assoc.is_established)

    with peak_rss(_pid(gateway)) as rss:
        with ThreadPoolExecutor(70) as pool:
            established = sum(pool.map(intruder, range(70)))
        visits = [pacs_visit(gateway.dicom_port) for _ in range(3)]
        for assoc in held:
            assoc.release()
    assert established == 8  # DICOM_MAX_UNKNOWN_ASSOCIATIONS
    assert all(v.served for v in visits), visits
    assert rss[1] - rss[0] < RSS_BOUND_MB, rss


def test_seventy_slow_loris_connections_are_closed_by_artim_and_the_pacs_is_served(
    gateway: Gateway,
) -> None:
    before = refused_counts(gateway.api)
    addresses = [f"127.0.0.{n}" for n in range(10, 17)]  # 7 addresses, 10 connections each
    with peak_rss(_pid(gateway)) as rss:
        opened = open_many(addresses, 10, gateway.dicom_port)
        loris = SlowLoris(list(opened), 1.0, {id(s): t for s, t in opened.items()})
        _, visits = _visits_during(gateway, lambda: loris.run(REQUEST_TIMEOUT_S + 6))
    after = refused_counts(gateway.api)
    assert len(opened) == 70
    assert all(v.served for v in visits), visits
    assert len(loris.closed_after) == 70, loris.closed_after
    assert max(loris.closed_after.values()) < REQUEST_TIMEOUT_S + 3, loris.closed_after
    timed_out = after.get("request_timeout", 0) - before.get("request_timeout", 0)
    refused_total = after.get("pending_total", 0) - before.get("pending_total", 0)
    assert (timed_out, refused_total) == (64, 6), (before, after)
    assert rss[1] - rss[0] < RSS_BOUND_MB, rss


def test_connections_beyond_the_pending_limit_of_one_address_are_closed_at_once(
    gateway: Gateway,
) -> None:
    socks = list(open_many(["127.0.0.4"], 20, gateway.dicom_port))
    time.sleep(1.0)  # well inside the request timeout
    try:
        closed = [closed_within(s, 0.05) for s in socks]
    finally:
        for sock in socks:
            sock.close()
    assert sum(c is not None for c in closed) == 4  # 20 - DICOM_MAX_PENDING_PER_ADDRESS
    assert pacs_visit(gateway.dicom_port).served


def test_a_silent_association_and_a_trickled_pdu_end_at_the_idle_timeout(
    gateway: Gateway,
) -> None:
    silent = raw_association("127.0.0.5", gateway.dicom_port, "INTRUDER")
    trickle = raw_association("127.0.0.5", gateway.dicom_port, "INTRUDER")
    trickle.sendall(struct.pack(">BBL", 0x04, 0, 100))
    start = time.monotonic()
    trickled_closed = None
    while time.monotonic() - start < IDLE_TIMEOUT_S + 4 and trickled_closed is None:
        try:
            trickle.send(b"\x00")
        except OSError:
            trickled_closed = time.monotonic() - start
        trickled_closed = trickled_closed or closed_within(trickle, 1.0)
    silent_closed = closed_within(silent, IDLE_TIMEOUT_S + 4)
    silent.close()
    trickle.close()
    assert trickled_closed is not None and trickled_closed < IDLE_TIMEOUT_S + 3
    assert silent_closed is not None
    assert pacs_visit(gateway.dicom_port).served


def test_an_unknown_peer_gets_no_association_under_the_default_policy(tmp_path: Path) -> None:
    """Without ACCEPT_ECHO_FROM_UNKNOWN an unnamed AE is rejected even for C-ECHO."""
    with run_gateway(tmp_path, [["up"]]) as gw:
        add_route(gw, free_port(), name="pacs", source_ae_title="PACS")
        stranger = raw_association_or_reject(gw.dicom_port)
        assert pacs_visit(gw.dicom_port).served
    assert stranger == 0x03  # A-ASSOCIATE-RJ


def raw_association_or_reject(port: int) -> int:
    """The PDU type the gateway answers an unknown AE's Verification request with."""
    sock = connect_from("127.0.0.6", port)
    try:
        sock.sendall(associate_rq("STRANGER"))
        return sock.recv(1)[0]
    finally:
        sock.close()
