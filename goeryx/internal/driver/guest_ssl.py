"""Eryx ssl: TLS client connections terminated on the host (goeryx).

The handshake, certificate verification (the host's system roots plus the sandbox's
NetConfig root certificates, and the server name) and encryption happen on the host with Go's
crypto/tls; ALPN offers only http/1.1. Guest settings such as verify_mode, check_hostname, CA
files and ciphers are accepted and ignored: they cannot weaken verification. Server-side TLS
and memory-BIO TLS (SSLObject) are not available.
"""

# Executed by the goeryx driver after the socket shim; _eryx_call and OP_NET_* are provided.

import base64 as _base64
import os as _os
import socket as _socket_mod
import textwrap as _textwrap
from collections import namedtuple as _namedtuple
from enum import Enum as _Enum, IntEnum as _IntEnum, IntFlag as _IntFlag

# Libraries check that the name starts with "OpenSSL " (urllib3 warns otherwise); the TLS is
# the host's, with a current TLS 1.2/1.3 stack.
OPENSSL_VERSION = "OpenSSL 3.0 compatible: TLS terminated on the goeryx host by Go crypto/tls"
OPENSSL_VERSION_INFO = (3, 0, 0, 0, 0)
OPENSSL_VERSION_NUMBER = 0x30000000
_OPENSSL_API_VERSION = OPENSSL_VERSION_INFO
_DEFAULT_CIPHERS = "DEFAULT"
HAS_SNI = HAS_ALPN = HAS_ECDH = HAS_TLSv1_2 = HAS_TLSv1_3 = HAS_NEVER_CHECK_COMMON_NAME = True
HAS_NPN = HAS_SSLv2 = HAS_SSLv3 = HAS_TLSv1 = HAS_TLSv1_1 = HAS_PSK = HAS_PHA = False
CHANNEL_BINDING_TYPES = []


class SSLError(OSError):
    """An error of the host's TLS layer."""

    library = "SSL"
    reason = None

    def __str__(self):
        if len(self.args) >= 2 and isinstance(self.args[1], str):
            return self.args[1]
        return super().__str__()


class SSLZeroReturnError(SSLError):
    """TLS connection closed."""


class SSLWantReadError(SSLError):
    """Non-blocking read would block."""


class SSLWantWriteError(SSLError):
    """Non-blocking write would block."""


class SSLSyscallError(SSLError):
    """System error."""


class SSLEOFError(SSLError):
    """EOF in violation of the protocol."""


class SSLCertVerificationError(SSLError, ValueError):
    """The certificate could not be verified."""

    verify_code = 1
    verify_message = ""


CertificateError = SSLCertVerificationError


def _exception(kind, message):
    if kind == "SSLCertVerificationError":
        reason = message.split(": ", 1)[1] if ": " in message else message
        e = SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] " + message)
        e.reason, e.verify_code, e.verify_message = "CERTIFICATE_VERIFY_FAILED", 1, reason
        return e
    cls = SSLEOFError if kind == "SSLEOFError" else SSLError
    e = cls(1, message)
    return e


class _IntEnums:
    pass


class VerifyMode(_IntEnum):
    CERT_NONE = 0
    CERT_OPTIONAL = 1
    CERT_REQUIRED = 2


CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED = VerifyMode


class VerifyFlags(_IntFlag):
    VERIFY_DEFAULT = 0
    VERIFY_CRL_CHECK_LEAF = 0x4
    VERIFY_CRL_CHECK_CHAIN = 0xC
    VERIFY_X509_STRICT = 0x20
    VERIFY_X509_TRUSTED_FIRST = 0x8000
    VERIFY_ALLOW_PROXY_CERTS = 0x40
    VERIFY_X509_PARTIAL_CHAIN = 0x80000


globals().update(VerifyFlags.__members__)


class _SSLMethod(_IntEnum):
    PROTOCOL_SSLv23 = 2
    PROTOCOL_TLS_CLIENT = 16
    PROTOCOL_TLS_SERVER = 17


PROTOCOL_TLS = PROTOCOL_SSLv23 = _SSLMethod.PROTOCOL_SSLv23
PROTOCOL_TLS_CLIENT = _SSLMethod.PROTOCOL_TLS_CLIENT
PROTOCOL_TLS_SERVER = _SSLMethod.PROTOCOL_TLS_SERVER


class Options(_IntFlag):
    OP_ALL = 0x80000850
    OP_NO_SSLv2 = 0
    OP_NO_SSLv3 = 0x2000000
    OP_NO_TLSv1 = 0x4000000
    OP_NO_TLSv1_1 = 0x10000000
    OP_NO_TLSv1_2 = 0x8000000
    OP_NO_TLSv1_3 = 0x20000000
    OP_NO_COMPRESSION = 0x20000
    OP_CIPHER_SERVER_PREFERENCE = 0x400000
    OP_SINGLE_DH_USE = 0
    OP_SINGLE_ECDH_USE = 0
    OP_NO_TICKET = 0x4000
    OP_NO_RENEGOTIATION = 0x40000000
    OP_ENABLE_MIDDLEBOX_COMPAT = 0x100000
    OP_IGNORE_UNEXPECTED_EOF = 0x80
    OP_LEGACY_SERVER_CONNECT = 0x4
    OP_ENABLE_KTLS = 0x8


globals().update(Options.__members__)


class TLSVersion(_IntEnum):
    MINIMUM_SUPPORTED = -2
    SSLv3 = 0x0300
    TLSv1 = 0x0301
    TLSv1_1 = 0x0302
    TLSv1_2 = 0x0303
    TLSv1_3 = 0x0304
    MAXIMUM_SUPPORTED = -1


class AlertDescription(_IntEnum):
    ALERT_DESCRIPTION_HANDSHAKE_FAILURE = 40
    ALERT_DESCRIPTION_INTERNAL_ERROR = 80


_ASN1Object = _namedtuple("_ASN1Object", "nid shortname longname oid")


class Purpose(_ASN1Object, _Enum):
    SERVER_AUTH = (129, "serverAuth", "TLS Web Server Authentication", "1.3.6.1.5.5.7.3.1")
    CLIENT_AUTH = (130, "clientAuth", "TLS Web Client Authentication", "1.3.6.1.5.5.7.3.2")


DefaultVerifyPaths = _namedtuple("DefaultVerifyPaths", "cafile capath openssl_cafile_env "
                                 "openssl_cafile openssl_capath_env openssl_capath")


def get_default_verify_paths():
    return DefaultVerifyPaths(None, None, "SSL_CERT_FILE", "", "SSL_CERT_DIR", "")


class SSLSession:
    pass


class MemoryBIO:
    """A byte buffer. TLS runs on the host, so an SSLObject over memory BIOs passes plaintext
    through them (see SSLContext.wrap_bio)."""

    def __init__(self):
        self._buf = bytearray()
        self._eof = False

    @property
    def pending(self):
        return len(self._buf)

    @property
    def eof(self):
        return self._eof and not self._buf

    def read(self, n=-1):
        if n < 0 or n > len(self._buf):
            n = len(self._buf)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def write(self, data):
        if self._eof:
            raise SSLError(1, "cannot write to a MemoryBIO after write_eof()")
        data = memoryview(data).cast("B")
        self._buf += data
        return len(data)

    def write_eof(self):
        self._eof = True


class SSLObject:
    """TLS over memory BIOs for a connection the host already encrypts: what the program
    writes goes to the outgoing BIO as plaintext, and the incoming BIO's plaintext is read
    back."""

    def __init__(self, *args, **kwargs):
        raise TypeError("SSLObject does not have a public constructor. Instances are returned "
                        "by SSLContext.wrap_bio().")

    @classmethod
    def _create(cls, incoming, outgoing, context, server_hostname, version):
        self = object.__new__(cls)
        self._in, self._out = incoming, outgoing
        self.context, self.server_hostname, self.server_side = context, server_hostname, False
        self._version = version
        self.session = None
        self.session_reused = False
        return self

    def do_handshake(self):
        pass

    def read(self, len=1024, buffer=None):
        data = self._in.read(len)
        if not data and not self._in.eof:
            raise SSLWantReadError(2, "The operation did not complete (read)")
        if buffer is not None:
            memoryview(buffer).cast("B")[: builtins_len(data)] = data
            return builtins_len(data)
        return data

    def write(self, data):
        return self._out.write(data)

    def unwrap(self):
        return None

    def pending(self):
        return 0

    def version(self):
        return self._version

    def selected_alpn_protocol(self):
        return "http/1.1"

    def selected_npn_protocol(self):
        return None

    def cipher(self):
        return ("TLS", self._version, 128)

    def shared_ciphers(self):
        return None

    def compression(self):
        return None

    def getpeercert(self, binary_form=False):
        return b"" if binary_form else {}

    def get_channel_binding(self, cb_type="tls-unique"):
        return None

    def verify_client_post_handshake(self):
        raise SSLError(1, "post-handshake authentication is not available")


builtins_len = len


def _host_transport(frame):
    """The event loop's host transport that a library is wrapping in memory-BIO TLS: found
    among the locals of its callers (anyio's TLSStream.wrap holds `transport_stream`)."""
    for _ in range(8):
        if frame is None:
            return None
        for value in list(frame.f_locals.values()):
            for candidate in (value, getattr(value, "_transport", None)):
                if getattr(type(candidate), "_eryx_host_transport", False):
                    return candidate
        frame = frame.f_back
    return None


class SSLContext:
    """TLS settings. Verification is always on and done by the host; the settings below are
    kept for compatibility and do not change it."""

    sslsocket_class = None  # set below
    sslobject_class = SSLObject

    def __init__(self, protocol=None, *args, **kwargs):
        if protocol is None:
            protocol = PROTOCOL_TLS
        self.protocol = _SSLMethod(protocol)
        server = self.protocol == PROTOCOL_TLS_SERVER
        self.check_hostname = not server and self.protocol == PROTOCOL_TLS_CLIENT
        self.verify_mode = CERT_REQUIRED if self.check_hostname else CERT_NONE
        self.verify_flags = VERIFY_X509_TRUSTED_FIRST  # noqa: F821
        self.options = OP_ALL | OP_NO_SSLv3 | OP_NO_COMPRESSION  # noqa: F821
        self.minimum_version = TLSVersion.MINIMUM_SUPPORTED
        self.maximum_version = TLSVersion.MAXIMUM_SUPPORTED
        self.post_handshake_auth = None
        self.hostname_checks_common_name = False
        self.keylog_filename = None
        self.sni_callback = None
        self.security_level = 2
        self.num_tickets = 2
        self._alpn = None

    def load_verify_locations(self, cafile=None, capath=None, cadata=None):
        pass  # trusted roots come from the host (NetConfig.with_root_cert)

    def load_default_certs(self, purpose=Purpose.SERVER_AUTH):
        pass

    def set_default_verify_paths(self):
        pass

    def load_cert_chain(self, certfile, keyfile=None, password=None):
        raise SSLError(1, "client certificates are not available in the sandbox")

    def set_ciphers(self, ciphers):
        pass

    def get_ciphers(self):
        return []

    def set_alpn_protocols(self, protocols):
        self._alpn = list(protocols)

    def set_npn_protocols(self, protocols):
        pass

    def set_ecdh_curve(self, name):
        pass

    def set_servername_callback(self, callback):
        self.sni_callback = callback

    def load_dh_params(self, path):
        pass

    def get_ca_certs(self, binary_form=False):
        return []

    def cert_store_stats(self):
        return {"x509": 0, "crl": 0, "x509_ca": 0}

    def session_stats(self):
        return {}

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                    suppress_ragged_eofs=True, server_hostname=None, session=None):
        if server_side:
            raise SSLError(1, "server-side TLS is not available in the sandbox")
        return SSLSocket._create(sock, self, server_hostname)

    def wrap_bio(self, incoming, outgoing, server_side=False, server_hostname=None, session=None):
        if server_side:
            raise SSLError(1, "server-side TLS is not available in the sandbox")
        import sys

        transport = _host_transport(sys._getframe(1))
        if transport is None:
            raise SSLError(1, "memory-BIO TLS is only available on connections of the sandbox's "
                              "event loop: TLS is terminated by the host")
        version = transport._start_tls(server_hostname, self)
        return SSLObject._create(incoming, outgoing, self, server_hostname, version)


class SSLSocket(_socket_mod.socket):
    """A TLS client socket: the host encrypts, decrypts and verified the server."""

    __slots__ = ("context", "server_hostname", "server_side", "_session")

    def __init__(self, *args, **kwargs):
        raise TypeError("SSLSocket does not have a public constructor. Instances are returned "
                        "by SSLContext.wrap_socket().")

    @classmethod
    def _create(cls, sock, context, server_hostname):
        if sock.type != _socket_mod.SOCK_STREAM:
            raise NotImplementedError("only stream sockets are supported")
        if isinstance(server_hostname, (bytes, bytearray)):
            server_hostname = bytes(server_hostname).decode("ascii")
        self = object.__new__(cls)
        for name in ("family", "type", "proto", "_timeout", "_io_refs", "_peer"):
            setattr(self, name, getattr(sock, name))
        self._fd = sock._fd
        _socket_mod._by_fd[self._fd] = self
        self._closed = False
        self._id = None
        self._tls_version = self._alpn = None
        self.context = context
        self.server_hostname = server_hostname
        self.server_side = False
        self._session = None
        cid = sock._id
        if cid is not None:
            h, _ = _socket_mod._call(OP_NET_TLS, {  # noqa: F821
                "id": cid, "server_hostname": server_hostname or "",
                "timeout_ns": _socket_mod._timeout_ns(sock._timeout)})
            self._id = cid
            self._tls_version = h.get("version")
            self._alpn = h.get("alpn") or "http/1.1"
        sock._id = None  # the TLS socket owns the connection now (as sock.detach())
        sock._closed = True
        return self

    def connect(self, address):
        self._connect(address, tls=True, server_hostname=self.server_hostname)

    def connect_ex(self, address):
        try:
            self.connect(address)
        except OSError as e:
            return e.errno or 5
        return 0

    def do_handshake(self, block=False):
        self._check()

    def version(self):
        return self._tls_version if self._id is not None else None

    def selected_alpn_protocol(self):
        return self._alpn if self._id is not None else None

    def selected_npn_protocol(self):
        return None

    def cipher(self):
        if self._id is None:
            return None
        return ("TLS", self._tls_version, 128)

    def shared_ciphers(self):
        return None

    def compression(self):
        return None

    def pending(self):
        return 0

    def getpeercert(self, binary_form=False):
        # Verified by the host; the certificate itself is not handed to the guest.
        self._check()
        return b"" if binary_form else {}

    def get_verified_chain(self):
        return []

    def get_unverified_chain(self):
        return []

    def get_channel_binding(self, cb_type="tls-unique"):
        return None

    def read(self, len=1024, buffer=None):
        if buffer is not None:
            return self.recv_into(buffer, len)
        return self.recv(len)

    def write(self, data):
        return self.send(data)

    def unwrap(self):
        raise SSLError(1, "unwrapping TLS is not available in the sandbox")

    def verify_client_post_handshake(self):
        raise SSLError(1, "post-handshake authentication is not available")

    @property
    def _sslobj(self):
        # Libraries (httpcore) read the TLS details from the standard SSLSocket's _sslobj.
        return self if self._id is not None else None

    @property
    def session(self):
        return self._session

    @session.setter
    def session(self, value):
        self._session = value

    @property
    def session_reused(self):
        return False


SSLContext.sslsocket_class = SSLSocket


def create_default_context(purpose=Purpose.SERVER_AUTH, *, cafile=None, capath=None, cadata=None):
    if purpose == Purpose.CLIENT_AUTH:
        return SSLContext(PROTOCOL_TLS_SERVER)
    return SSLContext(PROTOCOL_TLS_CLIENT)


def _create_unverified_context(protocol=None, *, cert_reqs=CERT_NONE, check_hostname=False,
                               purpose=Purpose.SERVER_AUTH, certfile=None, keyfile=None,
                               cafile=None, capath=None, cadata=None):
    ctx = SSLContext(PROTOCOL_TLS_CLIENT if protocol is None else protocol)
    ctx.check_hostname, ctx.verify_mode = check_hostname, cert_reqs
    return ctx


_create_default_https_context = create_default_context
_create_stdlib_context = _create_unverified_context


def wrap_socket(sock, keyfile=None, certfile=None, server_side=False, cert_reqs=CERT_NONE,
                ssl_version=PROTOCOL_TLS, ca_certs=None, do_handshake_on_connect=True,
                suppress_ragged_eofs=True, ciphers=None, server_hostname=None):
    return SSLContext(PROTOCOL_TLS_CLIENT).wrap_socket(sock, server_side=server_side,
                                                       server_hostname=server_hostname)


def RAND_bytes(n):
    return _os.urandom(n)


def RAND_status():
    return True


def RAND_add(string, entropy):
    pass


PEM_HEADER = "-----BEGIN CERTIFICATE-----"
PEM_FOOTER = "-----END CERTIFICATE-----"


def DER_cert_to_PEM_cert(der_cert_bytes):
    f = str(_base64.standard_b64encode(der_cert_bytes), "ASCII", "strict")
    return PEM_HEADER + "\n" + _textwrap.fill(f, 64) + "\n" + PEM_FOOTER + "\n"


def PEM_cert_to_DER_cert(pem_cert_string):
    if not pem_cert_string.startswith(PEM_HEADER):
        raise ValueError("Invalid PEM encoding; must start with %s" % PEM_HEADER)
    if not pem_cert_string.strip().endswith(PEM_FOOTER):
        raise ValueError("Invalid PEM encoding; must end with %s" % PEM_FOOTER)
    d = pem_cert_string.strip()[len(PEM_HEADER):-len(PEM_FOOTER)]
    return _base64.decodebytes(d.encode("ASCII", "strict"))


def get_server_certificate(addr, ssl_version=None, ca_certs=None, timeout=None):
    raise SSLError(1, "get_server_certificate is not available in the sandbox")


def cert_time_to_seconds(cert_time):
    import time

    return int(__import__("calendar").timegm(time.strptime(cert_time, "%b %d %H:%M:%S %Y GMT")))


socket_error = OSError
del _IntEnums
