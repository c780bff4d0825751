"""What a Kerberos refusal tells the operator, decided from numbers (runs without MIT Kerberos).

The token below is a real KRB-ERROR: MIT's acceptor wrote it for a host holding the key of
HTTP/ws02 when it was handed a ticket for HTTP/ws01 (tests/test_kerberos.py makes the same).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from collector.kerberos import (
    NOT_US,
    SKEW,
    explain_local,
    explain_refusal,
    minor_status,
    protocol_error,
    read_krb_error,
)

NOT_US_TOKEN = bytes.fromhex(
    "607406092a864886f71201020203007e653063a003020105a10302011ea411180f3230323631323036313734"
    "3432305aa505020303ceafa603020123a9101b0e504f5254464c4545542e54455354aa263024a003020103a1"
    "1d301b1b04485454501b13777330312e706f7274666c6565742e74657374"
)
SPN = "HTTP/ws01.portfleet.test"


def test_a_krb_error_gives_its_code_and_the_hosts_time_framed_or_bare() -> None:
    read = read_krb_error(NOT_US_TOKEN)
    assert read == (NOT_US, datetime(2026, 12, 6, 17, 44, 20, tzinfo=UTC))
    bare = NOT_US_TOKEN[NOT_US_TOKEN.index(b"\x7e") :]  # without the GSS framing and TOK_ID
    assert read_krb_error(bare) == read
    assert read_krb_error(b"NTLMSSP\x00\x02\x00\x00\x00") is None
    assert read_krb_error(NOT_US_TOKEN[:40]) is None  # cut short: not half an answer
    inner = bytes.fromhex("06092a864886f712010202") + b"\x02\x00" + b"\x6f\x02\x30\x00"
    ap_rep = b"\x60" + bytes([len(inner)]) + inner
    assert read_krb_error(ap_rep) is None  # TOK_ID 02 00: an AP-REP, not an error


def test_minor_status_codes_map_to_rfc_4120_numbers_signed_or_not() -> None:
    assert protocol_error(-1765328377) == 7  # KDC_ERR_S_PRINCIPAL_UNKNOWN
    assert protocol_error(2**32 - 1765328347) == SKEW  # as python-gssapi hands it over
    assert protocol_error(39756044) is None  # a GSSAPI mechanism code, not a protocol number
    text = (
        "authGSSClientStep() failed: (('Unspecified GSS failure.  Minor code may provide more "
        "information', 851968), ('Server not found in Kerberos database', -1765328377))"
    )
    assert minor_status(text) == -1765328377
    assert minor_status("authGSSClientInit() failed, result: -1") is None


def test_each_local_failure_says_what_to_do() -> None:
    def local(minor: int) -> str:
        return explain_local(
            f"x failed: (('major', 851968), ('whatever text', {minor}))", SPN, None
        )

    assert "run kinit" in local(-1765328189)  # no credentials cache
    assert "has expired" in local(-1765328352)
    assert "no service principal HTTP/ws01.portfleet.test" in local(-1765328377)
    assert "setspn -S HTTP/ws01.portfleet.test COMPUTER" in local(-1765328377)
    assert "no KDC answered" in local(-1765328228)
    # The text is never read: a localized or changed message decides nothing.
    assert "has expired" not in explain_local("(('a', 1), ('Ticket expired', 5))", SPN, None)


def test_a_refusal_reads_the_krb_error_first_then_the_hosts_clock() -> None:
    # Its server time is long past now: the error number decides, not the clocks.
    refused = explain_refusal(SPN, "portfleet", NOT_US_TOKEN, None)
    assert f"could not read the ticket for {SPN}" in refused and "setspn -X" in refused
    ahead = format_datetime(datetime.now(UTC) + timedelta(minutes=12), usegmt=True)
    skewed = explain_refusal(SPN, "portfleet", None, ahead)
    assert "(12 min ahead of this one)" in skewed and "w32tm /resync" in skewed
    now = format_datetime(datetime.now(UTC), usegmt=True)
    plain = explain_refusal(SPN, "portfleet", None, now)
    assert "not allowed to use WinRM" in plain and "portfleet" in plain
