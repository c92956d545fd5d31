"""Reading the caller's SPIFFE ID from the x-forwarded-client-cert header Istio's sidecar sets."""

from __future__ import annotations

from services.kit.sidecar import XFCC_HEADER, forwarded_spiffe_id, parse_xfcc

OWN = "spiffe://cluster.local/ns/orchestrall/sa/billing"
AGENT = "spiffe://cluster.local/ns/orchestrall/sa/agent"
GATEWAY = "spiffe://cluster.local/ns/orchestrall/sa/gateway"
#: What an Istio sidecar's inbound listener appends (Subject, URI and DNS of the peer certificate).
SIDECAR = f'By={OWN};Hash=4f7a2c;Subject="";URI={AGENT}'


def xfcc(*values: str) -> list[tuple[str, str]]:
    return [(XFCC_HEADER, value) for value in values]


def test_parses_elements_pairs_and_quoted_values() -> None:
    header = f'By={OWN};Subject="CN=agent,O=Orchestrall; \\"quoted\\"";URI={AGENT},by={OWN};uri={GATEWAY}'
    assert parse_xfcc(header) == [
        [("by", OWN), ("subject", 'CN=agent,O=Orchestrall; "quoted"'), ("uri", AGENT)],
        [("by", OWN), ("uri", GATEWAY)],
    ]


def test_the_sidecars_element_names_the_caller() -> None:
    assert forwarded_spiffe_id(xfcc(SIDECAR), OWN) == AGENT
    assert forwarded_spiffe_id([("authorization", "Bearer x"), *xfcc(SIDECAR)], OWN) == AGENT


def test_elements_a_caller_sent_along_are_ignored() -> None:
    # A gateway pretending to be the agent: its forged element comes first, the sidecar's last.
    forged = f"By={OWN};URI={AGENT}"
    assert forwarded_spiffe_id(xfcc(f"{forged},By={OWN};URI={GATEWAY}"), OWN) == GATEWAY
    assert forwarded_spiffe_id(xfcc(forged, f"By={OWN};URI={GATEWAY}"), OWN) == GATEWAY


def test_no_identity_without_a_usable_element_by_this_workload() -> None:
    assert forwarded_spiffe_id([], OWN) is None
    assert forwarded_spiffe_id(xfcc(f"By={GATEWAY};URI={AGENT}"), OWN) is None  # another proxy's
    assert forwarded_spiffe_id(xfcc(f"URI={AGENT}"), OWN) is None  # no By at all
    assert forwarded_spiffe_id(xfcc(f'By={OWN};Subject="CN=agent"'), OWN) is None  # no URI
    assert forwarded_spiffe_id(xfcc(f"By={OWN};URI={AGENT};URI={GATEWAY}"), OWN) is None  # two
    assert forwarded_spiffe_id(xfcc(f"By={OWN};URI=https://agent.example"), OWN) is None  # not SPIFFE
