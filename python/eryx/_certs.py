"""Parsing of root certificates for ``NetConfig.with_root_cert`` (stdlib only).

The check is structural: each certificate must be one well-formed DER ``Certificate``
(``SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE, signature BIT STRING }``).
The engine parses it fully (Go ``crypto/x509``) when the config reaches it.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["parse_certificates"]

_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)
_SEQUENCE = 0x30
_INTEGER = 0x02
_BIT_STRING = 0x03
_VERSION = 0xA0  # [0] EXPLICIT, constructed


def _read_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """Read one DER element at ``pos``: returns (tag, content start, content end)."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("unsupported DER tag")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 8 or pos + count > len(data):
            raise ValueError("invalid DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise ValueError("non-minimal DER length")
        pos += count
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER element")
    return tag, pos, end


def _expect(data: bytes, pos: int, tag: int, what: str) -> tuple[int, int]:
    got, start, end = _read_tlv(data, pos)
    if got != tag:
        raise ValueError(f"expected {what}")
    return start, end


def _check_der_certificate(der: bytes) -> None:
    start, end = _expect(der, 0, _SEQUENCE, "a Certificate SEQUENCE")
    if end != len(der):
        raise ValueError("trailing data after the certificate")
    tbs_start, tbs_end = _expect(der, start, _SEQUENCE, "a tbsCertificate SEQUENCE")
    _, alg_end = _expect(der, tbs_end, _SEQUENCE, "a signatureAlgorithm SEQUENCE")
    _, sig_end = _expect(der, alg_end, _BIT_STRING, "a signature BIT STRING")
    if sig_end != end:
        raise ValueError("unexpected data in the certificate")
    # tbsCertificate: [version] serialNumber signature issuer validity subject spki ...
    pos = tbs_start
    tag, _, field_end = _read_tlv(der, pos)
    if tag == _VERSION:
        pos = field_end
    _, pos = _expect(der, pos, _INTEGER, "a serialNumber INTEGER")
    for what in ("signature", "issuer", "validity", "subject", "subjectPublicKeyInfo"):
        _, pos = _expect(der, pos, _SEQUENCE, f"a {what} SEQUENCE")
    if pos > tbs_end:
        raise ValueError("malformed tbsCertificate")


def parse_certificates(cert: bytes) -> list[bytes]:
    """Split one DER certificate, or PEM text with one or more, into DER certificates.

    Raises ``ValueError`` when nothing parses as a certificate.
    """
    if b"-----BEGIN" in cert:
        blocks = _PEM_BLOCK.findall(cert)
        if not blocks:
            raise ValueError("invalid certificate: no PEM CERTIFICATE block found")
        ders = []
        for block in blocks:
            try:
                ders.append(base64.b64decode(b"".join(block.split()), validate=True))
            except (binascii.Error, ValueError):
                raise ValueError("invalid certificate: bad base64 in PEM block") from None
    else:
        ders = [cert]
    for der in ders:
        try:
            _check_der_certificate(der)
        except ValueError as exc:
            raise ValueError(f"invalid certificate: {exc}") from None
    return ders
