"""Eryx socket: TCP client sockets whose connections the host makes (goeryx).

DNS, the connect, TLS and every limit of the sandbox's network policy live on the host; this
module only forwards calls. Client TCP sockets work as usual (connect, create_connection,
send/sendall, recv/recv_into, makefile, timeouts). UDP, raw and listening sockets are not
available and raise OSError. getaddrinfo returns the name unresolved, and gethostname()
returns "sandbox".
"""

# Executed by the goeryx driver in a namespace pre-filled with the public names of the
# standard socket module (constants, enums, exceptions, SocketIO), plus _eryx_call (the host
# call) and the OP_NET_* numbers.

import errno as _errno
import io as _io
import itertools as _itertools

import struct as _struct
import weakref as _weakref

_READ_HEADER = _struct.Struct("<qqII")  # OP_NET_READ: id, timeout_ns, max, flags
_COUNT = _struct.Struct("<q")

_fake_fds = _itertools.count(1 << 24)
_by_fd = _weakref.WeakValueDictionary()  # fake descriptor -> socket (select, poll)
_MAX_SEND = 1 << 20
_MAX_RECV = 1 << 20
_SOCK_FLAGS = globals().get("SOCK_NONBLOCK", 0) | globals().get("SOCK_CLOEXEC", 0)
_defaulttimeout = None


def _unsupported(what):
    return OSError(_errno.EOPNOTSUPP, "%s: only TCP client connections are available in the sandbox" % what)


class _PolicyError(PermissionError):
    """A refusal of the host's policy: errno EACCES, and str() is the message alone, as the
    contract words it (API.md §3.4)."""

    def __str__(self):
        return str(self.strerror)


_PolicyError.__module__ = "builtins"
_PolicyError.__name__ = _PolicyError.__qualname__ = "PermissionError"


def _exception(err):
    """The guest exception for a host error {type, errno, message}."""
    kind = err.get("type")
    message = err.get("message", "")
    num = getattr(_errno, err.get("errno") or "", None)
    if kind == "TimeoutError":
        return TimeoutError("timed out")
    if kind == "gaierror":
        code = {"EAI_NONAME": globals().get("EAI_NONAME", -2),
                "EAI_AGAIN": globals().get("EAI_AGAIN", -3)}.get(err.get("errno"), -2)
        return gaierror(code, message)
    if kind.startswith("SSL"):
        import ssl

        return ssl._exception(kind, message)
    if kind == "PermissionError":
        return _PolicyError(num, message)
    cls = {"ConnectionRefusedError": ConnectionRefusedError,
           "ConnectionResetError": ConnectionResetError,
           "ConnectionAbortedError": ConnectionAbortedError,
           "BrokenPipeError": BrokenPipeError}.get(kind, OSError)
    return cls(num, message) if num is not None else cls(message)


def _call(op, header, payload=b""):
    h, data = _eryx_call(op, header, payload)  # noqa: F821
    err = h.get("error")
    if err is not None:
        raise _exception(err)
    return h, data


def _host_of(host):
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("ascii")
    if not isinstance(host, str):
        raise TypeError("str, bytes or bytearray expected, not %s" % type(host).__name__)
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    return host


def _port_of(port):
    if isinstance(port, str):
        port = {"http": 80, "https": 443}.get(port, port)
        try:
            port = int(port)
        except ValueError:
            raise gaierror(globals().get("EAI_SERVICE", -8), "Servname not supported for ai_socktype") from None
    if not isinstance(port, int):
        raise TypeError("'%s' object cannot be interpreted as an integer" % type(port).__name__)
    if not 0 <= port <= 65535:
        raise OverflowError("connect(): port must be 0-65535.")
    return port


def _timeout_ns(timeout):
    # The guest's timeout only shortens the host's: None and 0 mean the host's (API.md §3.4).
    if not timeout:
        return 0
    return max(1, int(timeout * 1e9))


class socket:
    """A TCP client socket; the connection itself is the host's."""

    __slots__ = ("family", "type", "proto", "_id", "_timeout", "_closed", "_io_refs", "_fd",
                 "_peer", "_tls_version", "_alpn", "__weakref__")

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        if fileno is not None:
            raise _unsupported("sockets from descriptors")
        if family == -1:
            family = AF_INET  # noqa: F821
        if type == -1:
            type = SOCK_STREAM  # noqa: F821
        if family not in (AF_INET, globals().get("AF_INET6", AF_INET)):  # noqa: F821
            raise OSError(_errno.EAFNOSUPPORT, "address family %r is not available in the sandbox: "
                          "only TCP client connections are" % (family,))
        if type & ~_SOCK_FLAGS != SOCK_STREAM:  # noqa: F821
            raise OSError(_errno.EPROTONOSUPPORT, "UDP and raw sockets are not available in the "
                          "sandbox: only TCP client connections are")
        self.family = _intenum_converter(family, AddressFamily)  # noqa: F821
        self.type = _intenum_converter(type & ~_SOCK_FLAGS, SocketKind)  # noqa: F821
        self.proto = 0 if proto == -1 else proto
        self._id = None
        self._timeout = _defaulttimeout
        self._closed = False
        self._io_refs = 0
        self._fd = next(_fake_fds)
        _by_fd[self._fd] = self
        self._peer = None
        self._tls_version = None
        self._alpn = None

    def __repr__(self):
        s = "<%s.%s fd=%i, family=%s, type=%s, proto=%i" % (
            self.__class__.__module__, self.__class__.__qualname__,
            -1 if self._closed else self._fd, self.family, self.type, self.proto)
        if self._peer is not None:
            s += ", raddr=%r" % (self._peer,)
        return s + ">"

    def __getstate__(self):
        raise TypeError("cannot pickle %r object" % self.__class__.__name__)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        if not self._closed:
            self.close()

    def __del__(self):
        try:
            if self._id is not None:
                self._real_close()
        except BaseException:
            pass

    # -- connecting ---------------------------------------------------------------------------

    def _connect(self, address, tls=False, server_hostname=None):
        if self._closed:
            raise OSError(_errno.EBADF, "Bad file descriptor")
        if self._id is not None:
            raise OSError(_errno.EISCONN, "Transport endpoint is already connected")
        if not isinstance(address, tuple) or len(address) < 2:
            raise TypeError("%s(): AF_INET address must be tuple, not %s"
                            % ("connect", type(address).__name__))
        host, port = _host_of(address[0]), _port_of(address[1])
        h, _ = _call(OP_NET_CONNECT, {  # noqa: F821
            "host": host, "port": port, "tls": tls, "server_hostname": server_hostname or "",
            "timeout_ns": _timeout_ns(self._timeout)})
        self._adopt(h, host, port)

    def _adopt(self, h, host, port):
        """Take the connection of a connect response (also loop.sock_connect's)."""
        self._id = h["id"]
        peer = h.get("peer") or ""
        ip, _, p = peer.rpartition(":")
        self._peer = (ip.strip("[]") or host, int(p) if p.isdigit() else port)
        self._tls_version = h.get("version") or None
        self._alpn = h.get("alpn") or None

    def connect(self, address):
        self._connect(address)

    def connect_ex(self, address):
        try:
            self._connect(address)
        except OSError as e:
            return e.errno or _errno.EIO
        return 0

    def _check(self):
        # A closed socket that file objects still use (makefile) keeps its connection.
        if self._id is None:
            if self._closed:
                raise OSError(_errno.EBADF, "Bad file descriptor")
            raise OSError(_errno.ENOTCONN, "Transport endpoint is not connected")
        return self._id

    # -- data ---------------------------------------------------------------------------------

    def recv(self, bufsize, flags=0):
        if flags:
            raise _unsupported("recv flags")
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        return self._recv(bufsize, 0)

    def _recv(self, bufsize, rflags):
        cid = self._check()
        if bufsize == 0:
            return b""
        # OP_NET_READ: the response is the bytes themselves (docs/PROTOCOL.md).
        data = _eryx_host_call(OP_NET_READ, _READ_HEADER.pack(  # noqa: F821
            cid, _timeout_ns(self._timeout), min(bufsize, _MAX_RECV), rflags))
        if data:
            return data
        self._read_status(cid)
        return b""

    def _read_status(self, cid):
        """Why the last read returned nothing: the end of the stream returns, the rest raises."""
        h, _ = _eryx_decode(_eryx_host_call(OP_NET_READ, _READ_HEADER.pack(  # noqa: F821
            cid, 0, 0, NET_READ_STATUS)))  # noqa: F821
        if "error" in h:
            raise _exception(h["error"])
        if not h.get("eof"):
            raise BlockingIOError(_errno.EAGAIN, "Resource temporarily unavailable")

    def recv_into(self, buffer, nbytes=0, flags=0):
        if flags:
            raise _unsupported("recv flags")
        return self._recv_into(buffer, nbytes, 0)

    def _recv_into(self, buffer, nbytes, rflags):
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise TypeError("recv_into() argument 'buffer' must be read-write bytes-like object, "
                            "not %s" % type(buffer).__name__)
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        n = nbytes or len(view)
        if n > len(view):
            raise ValueError("buffer too small for requested bytes")
        if n < NET_READ_HEADER_SIZE:  # noqa: F821
            data = self._recv(n, rflags)
            view[: len(data)] = data
            return len(data)
        cid = self._check()
        # The host writes the bytes straight into the buffer; the request header occupies its
        # first bytes meanwhile (restored where the host wrote less).
        target = view[: min(n, _MAX_RECV)]
        saved = bytes(target[:NET_READ_HEADER_SIZE])  # noqa: F821
        target[:NET_READ_HEADER_SIZE] = _READ_HEADER.pack(  # noqa: F821
            cid, _timeout_ns(self._timeout), len(target), NET_READ_INTO | rflags)  # noqa: F821
        try:
            (got,) = _COUNT.unpack(_eryx_host_call(OP_NET_READ, target))  # noqa: F821
        except BaseException:
            target[:NET_READ_HEADER_SIZE] = saved  # noqa: F821
            raise
        if got < NET_READ_HEADER_SIZE:  # noqa: F821
            target[got:NET_READ_HEADER_SIZE] = saved[got:]  # noqa: F821
        if got:
            return got
        self._read_status(cid)
        return 0

    def recvfrom(self, bufsize, flags=0):
        return self.recv(bufsize, flags), self._peer

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        return self.recv_into(buffer, nbytes, flags), self._peer

    def send(self, data, flags=0):
        if flags:
            raise _unsupported("send flags")
        return self._send(data, b"")

    def _send(self, data, extra):
        cid = self._check()
        view = memoryview(data).cast("B")
        if not len(view):
            return 0
        h, _ = _eryx_raw_call(OP_NET_SEND, b'{"id":%d,"timeout_ns":%d%s}' % (  # noqa: F821
            cid, _timeout_ns(self._timeout), extra), bytes(view[:_MAX_SEND]))
        if "error" in h:
            raise _exception(h["error"])
        return h["n"]

    def sendall(self, data, flags=0):
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            sent += self.send(view[sent:], flags)

    def sendto(self, *args):
        raise _unsupported("sendto")

    def sendfile(self, file, offset=0, count=None):
        total = 0
        if offset:
            file.seek(offset)
        while count is None or total < count:
            chunk = file.read(min(65536, count - total) if count is not None else 65536)
            if not chunk:
                break
            self.sendall(chunk)
            total += len(chunk)
        return total

    def makefile(self, mode="r", buffering=None, *, encoding=None, errors=None, newline=None):
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError("invalid mode %r (only r, w, b allowed)" % (mode,))
        writing = "w" in mode
        reading = "r" in mode or not writing
        binary = "b" in mode
        rawmode = ("r" if reading else "") + ("w" if writing else "")
        raw = SocketIO(self, rawmode)  # noqa: F821
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = _io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        if reading and writing:
            buffer = _io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = _io.BufferedReader(raw, buffering)
        else:
            buffer = _io.BufferedWriter(raw, buffering)
        if binary:
            return buffer
        text = _io.TextIOWrapper(buffer, encoding, errors, newline)
        text.mode = mode
        return text

    def _decref_socketios(self):
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    # -- state --------------------------------------------------------------------------------

    def settimeout(self, value):
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self):
        return self._timeout

    def setblocking(self, flag):
        self._timeout = None if flag else 0.0

    def getblocking(self):
        return self._timeout != 0.0

    def fileno(self):
        return -1 if self._closed else self._fd

    def getpeername(self):
        self._check()
        return self._peer

    def getsockname(self):
        return ("0.0.0.0", 0)

    def setsockopt(self, *args):
        pass  # TCP_NODELAY and friends: the host sets its own options

    def getsockopt(self, level, optname, buflen=None):
        if optname == globals().get("SO_TYPE"):
            return int(self.type)
        return 0 if buflen is None else bytes(buflen)

    def shutdown(self, how):
        cid = self._check()
        _call(OP_NET_SHUTDOWN, {"id": cid, "how": int(how)})  # noqa: F821

    def _real_close(self):
        cid, self._id = self._id, None
        if cid is not None:
            _call(OP_NET_CLOSE, {"id": cid})  # noqa: F821

    def close(self):
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def detach(self):
        self._closed = True
        cid, self._id = self._id, None
        return -1 if cid is None else self._fd

    def dup(self):
        raise _unsupported("dup")

    def bind(self, address):
        raise _unsupported("bind")

    def listen(self, backlog=0):
        raise _unsupported("listen")

    def accept(self):
        raise _unsupported("accept")

    def _accept(self):
        raise _unsupported("accept")

    def set_inheritable(self, inheritable):
        pass

    def get_inheritable(self):
        return False

    @property
    def timeout(self):
        return self._timeout


SocketType = socket


def create_connection(address, timeout=_GLOBAL_DEFAULT_TIMEOUT, source_address=None,  # noqa: F821
                      *, all_errors=False):
    sock = socket(AF_INET, SOCK_STREAM)  # noqa: F821
    if timeout is not _GLOBAL_DEFAULT_TIMEOUT:  # noqa: F821
        sock.settimeout(timeout)
    try:
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def create_server(*args, **kwargs):
    raise _unsupported("create_server")


def socketpair(*args, **kwargs):
    raise _unsupported("socketpair")


def fromfd(*args, **kwargs):
    raise _unsupported("fromfd")


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    # Names are resolved on the host at connect time, under its policy (API.md §3.4).
    if host is None:
        host = "localhost"
    host = _host_of(host)
    if port is None:
        port = 0
    elif not isinstance(port, int):
        port = _port_of(port if isinstance(port, str) else bytes(port).decode())
    fam = AF_INET6 if family == globals().get("AF_INET6", -1) else AF_INET  # noqa: F821
    kind = _intenum_converter(type or SOCK_STREAM, SocketKind)  # noqa: F821
    addr = (host, port, 0, 0) if fam != AF_INET else (host, port)  # noqa: F821
    return [(_intenum_converter(fam, AddressFamily), kind, proto or 6, "", addr)]  # noqa: F821


def gethostname():
    return "sandbox"


def getfqdn(name=""):
    return name or "sandbox"


def gethostbyname(hostname):
    return _host_of(hostname)


def gethostbyname_ex(hostname):
    return (_host_of(hostname), [], [_host_of(hostname)])


def getdefaulttimeout():
    return _defaulttimeout


def setdefaulttimeout(timeout):
    global _defaulttimeout
    if timeout is not None:
        timeout = float(timeout)
        if timeout < 0:
            raise ValueError("Timeout value out of range")
    _defaulttimeout = timeout


def has_dualstack_ipv6():
    return False
