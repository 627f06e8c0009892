

# ---------------------------------------------------------------------------------------------
# Guest networking (API.md §3.4; goeryx/internal/net does the work on the host). The socket
# and ssl modules are shims whose sources (guest_socket.py, guest_ssl.py) the engine embeds as
# _NET_SOCKET_SRC and _NET_SSL_SRC; they are installed in sys.modules when the driver boots,
# so that asyncio, http.client and user code import them, and they are part of the image.


def _net_raw_call(op, header, payload=b""):
    """A host call whose header the caller encoded (bytes of a JSON object): the hot paths
    (send, recv) format theirs, which costs a fraction of json.dumps."""
    return _decode(_host.call(op, _LEN.pack(len(header)) + header + payload))  # noqa: F821


def _net_module(name, source, base):
    mod = ModuleType(name)
    ns = mod.__dict__
    ns.update(base)
    ns["_eryx_call"] = _host_call
    ns["_eryx_raw_call"] = _net_raw_call
    ns["_eryx_host_call"] = _host.call  # noqa: F821 (OP_NET_READ: not framed)
    ns["_eryx_decode"] = _decode
    for key, value in globals().items():
        if key.startswith(("OP_NET_", "NET_READ_")):
            ns[key] = value
    exec(compile(source, "<eryx %s>" % name, "exec"), ns)
    return mod


def _net_install():
    import socket as std_socket  # the standard module: constants, enums, SocketIO, exceptions

    base = {k: v for k, v in vars(std_socket).items() if not k.startswith("__")}
    sys.modules["socket"] = _net_module("socket", _NET_SOCKET_SRC, base)  # noqa: F821
    sys.modules["ssl"] = _net_module("ssl", _NET_SSL_SRC, {})  # noqa: F821
    import select as std_select
    import selectors

    base = {k: v for k, v in vars(std_select).items() if not k.startswith("__")}
    sys.modules["select"] = shim = _net_module("select", _NET_SELECT_SRC, base)  # noqa: F821
    # selectors bound the standard module when socket imported it: point it at the shim.
    selectors.select = shim
    if hasattr(selectors, "PollSelector"):
        selectors.PollSelector._selector_cls = shim.poll
    if hasattr(selectors, "SelectSelector"):
        selectors.SelectSelector._select = staticmethod(shim.select)


_net_install()
_socket_type = sys.modules["socket"].socket  # excluded from snapshots (_unsnapshottable)


# asyncio client connections: the guest's HostEventLoop creates transports on host connections.
# Its selector tells the host, in every OP_WAIT, which connections it waits to read from and
# which have data waiting to be sent; the host answers with the data that arrived (in the
# payload), the connects that ended and the connections with room to send. So every
# connection makes progress while the loop waits, and a slow one blocks no other.

_NET_RECV_MAX = 256 << 10


def _net_state(selector):
    state = getattr(selector, "_net", None)
    if state is None:
        # id -> transport reading; id -> transport with data to send; id -> connect future
        state = selector._net = ({}, {}, {})
    return state


def _net_wait_header(selector, timeout_ns):
    readers, writers, _ = _net_state(selector)
    header = {"timeout_ns": timeout_ns}
    if readers:
        header["recv"] = list(readers)
        header["recv_max"] = _NET_RECV_MAX
    if writers:
        header["send"] = list(writers)
    return header


def _net_events(selector, net, payload):
    readers, writers, connects = _net_state(selector)
    for item in net.get("connected") or ():
        fut = connects.pop(item.get("id"), None)
        if fut is None or fut.done():
            if "error" not in item:
                _host_call(OP_NET_CLOSE, {"id": item.get("id")})  # noqa: F821 (nobody waits)
            continue
        if "error" in item:
            fut.set_exception(sys.modules["socket"]._exception(item["error"]))
        else:
            fut.set_result(item)
    offset = 0
    for item in net.get("data") or ():
        n = item.get("n", 0)
        data, offset = payload[offset: offset + n], offset + n
        transport = readers.get(item.get("id"))
        if transport is not None:
            transport._loop.call_soon(transport._received, data, item.get("eof"), item.get("error"))
    for cid in net.get("writable") or ():
        transport = writers.get(cid)
        if transport is not None:
            transport._loop.call_soon(transport._flush)


def _net_extend_loop(loop_class):
    import asyncio
    from asyncio import transports

    socket = sys.modules["socket"]
    ssl = sys.modules["ssl"]
    send_max = 1 << 20

    class _SSLInfo:
        """What get_extra_info('ssl_object') offers of a host TLS connection."""

        def __init__(self, version, alpn, server_hostname, context):
            self._version, self._alpn = version, alpn
            self.server_hostname, self.context, self.server_side = server_hostname, context, False

        def version(self):
            return self._version

        def selected_alpn_protocol(self):
            return self._alpn

        def cipher(self):
            return ("TLS", self._version, 128)

        def compression(self):
            return None

        def getpeercert(self, binary_form=False):
            return b"" if binary_form else {}

    class _ConnSocket:
        """get_extra_info('socket') of a host transport: addresses and options only (the
        connection is the transport's)."""

        family, type, proto = socket.AF_INET, socket.SOCK_STREAM, 6

        def __init__(self, peer):
            self._peer = peer
            self._fd = next(socket._fake_fds)

        def getpeername(self):
            return self._peer

        def getsockname(self):
            return ("0.0.0.0", 0)

        def fileno(self):
            return self._fd

        def setsockopt(self, *args):
            pass

        def getsockopt(self, level, optname, buflen=None):
            return 0 if buflen is None else bytes(buflen)

        def gettimeout(self):
            return 0.0

        def setblocking(self, flag):
            pass

    class HostTransport(transports._FlowControlMixin, transports.Transport):
        """A stream transport on a host connection."""

        _eryx_host_transport = True  # ssl.SSLContext.wrap_bio looks for it

        def _start_tls(self, server_hostname, context):
            """TLS on this connection, now (the handshake blocks the loop, bounded by the
            connect timeout); returns the negotiated version."""
            if self._buffer:
                raise ssl.SSLError(1, "cannot start TLS with data left to send")
            if server_hostname is None:
                server_hostname = self._extra.get("peername", ("",))[0]
            h, _ = socket._call(OP_NET_TLS, {"id": self._id,  # noqa: F821
                                             "server_hostname": server_hostname or ""})
            self._set_tls(h.get("version"), "http/1.1", server_hostname, context)
            return h.get("version")

        def _set_tls(self, version, alpn, server_hostname, context):
            self._extra["sslcontext"] = context
            self._extra["ssl_object"] = info = _SSLInfo(version, alpn, server_hostname, context)
            self._extra["peercert"] = {}
            self._extra["cipher"] = info.cipher()
            self._extra["compression"] = None

        def __init__(self, loop, cid, protocol, info, extra):
            super().__init__(extra, loop)
            self._id = cid
            self._protocol = protocol
            self._readers, self._writers, _ = _net_state(loop._selector)
            self._buffer = bytearray()
            self._closing = False
            self._lost = False
            self._eof = False  # write_eof called
            self._paused = False
            self._readers[cid] = self

        def __repr__(self):
            return "<HostTransport id=%s%s>" % (self._id, " closing" if self._closing else "")

        # reading
        def is_reading(self):
            return not self._paused and not self._closing and self._id in self._readers

        def pause_reading(self):
            self._paused = True
            self._readers.pop(self._id, None)

        def resume_reading(self):
            if self._paused and not self._closing:
                self._paused = False
                self._readers[self._id] = self

        def _received(self, data, eof, error):
            if self._lost:
                return
            try:
                if data:
                    self._protocol.data_received(data)
                if error:
                    self._fatal(socket._exception(error))
                elif eof:
                    self._readers.pop(self._id, None)
                    if not self._protocol.eof_received():
                        self.close()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal(exc)

        # writing
        def write(self, data):
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError("data argument must be a bytes-like object, not %r"
                                % type(data).__name__)
            if self._eof:
                raise RuntimeError("Cannot call write() after write_eof()")
            if self._lost or self._closing or not data:
                return
            self._buffer += data
            self._flush()
            self._maybe_pause_protocol()

        def _flush(self):
            if self._lost:
                return
            try:
                while self._buffer:
                    h, _ = _host_call(OP_NET_SEND, {"id": self._id, "nonblock": True},  # noqa: F821
                                      bytes(self._buffer[:send_max]))
                    if "error" in h:
                        raise socket._exception(h["error"])
                    n = h.get("n", 0)
                    if not n:
                        break
                    del self._buffer[:n]
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal(exc)
                return
            if self._buffer:
                self._writers[self._id] = self
                return
            self._writers.pop(self._id, None)
            self._maybe_resume_protocol()
            if self._closing:
                self._finish(None)
            elif self._eof:
                _host_call(OP_NET_SHUTDOWN, {"id": self._id, "how": 1})  # noqa: F821

        def get_write_buffer_size(self):
            return len(self._buffer)

        def can_write_eof(self):
            return True

        def write_eof(self):
            if self._closing or self._eof:
                return
            self._eof = True
            if not self._buffer:
                _host_call(OP_NET_SHUTDOWN, {"id": self._id, "how": 1})  # noqa: F821

        # closing
        def is_closing(self):
            return self._closing

        def close(self):
            if self._closing:
                return
            self._closing = True
            self._readers.pop(self._id, None)
            if not self._buffer:
                self._finish(None)

        def abort(self):
            self._closing = True
            self._finish(None)

        def _fatal(self, exc):
            self._closing = True
            self._finish(exc)

        def _finish(self, exc):
            if self._lost:
                return
            self._lost = True
            self._readers.pop(self._id, None)
            self._writers.pop(self._id, None)
            self._buffer.clear()
            _host_call(OP_NET_CLOSE, {"id": self._id})  # noqa: F821
            self._loop.call_soon(self._protocol.connection_lost, exc)

        def set_protocol(self, protocol):
            self._protocol = protocol

        def get_protocol(self):
            return self._protocol

    async def create_connection(self, protocol_factory, host=None, port=None, *, ssl=None,
                                family=0, proto=0, flags=0, sock=None, local_addr=None,
                                server_hostname=None, ssl_handshake_timeout=None,
                                ssl_shutdown_timeout=None, happy_eyeballs_delay=None,
                                interleave=None, all_errors=False):
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if sock is not None:
            raise OSError(95, "create_connection(sock=...) is not available in the sandbox: "
                              "pass host and port")
        if local_addr is not None:
            raise OSError(95, "local_addr is not available in the sandbox")
        if host is None or port is None:
            raise ValueError("host and port was not specified and no sock specified")
        if ssl and server_hostname is None:
            server_hostname = host
        h, _ = socket._call(OP_NET_CONNECT, {  # noqa: F821
            "host": socket._host_of(host), "port": socket._port_of(port), "tls": bool(ssl),
            "server_hostname": server_hostname or "", "async": True})
        cid = h["id"]
        connects = _net_state(self._selector)[2]
        fut = connects[cid] = self.create_future()
        try:
            info = await fut
        except BaseException:
            if connects.pop(cid, None) is None and fut.done() and not fut.cancelled() \
                    and fut.exception() is None:
                _host_call(OP_NET_CLOSE, {"id": cid})  # noqa: F821
            raise
        peer = info.get("peer") or ""
        ip, _, p = peer.rpartition(":")
        peername = (ip.strip("[]") or host, int(p) if p.isdigit() else port)
        extra = {"peername": peername, "sockname": ("0.0.0.0", 0), "socket": _ConnSocket(peername)}
        if ssl:
            context = ssl if isinstance(ssl, sys.modules["ssl"].SSLContext) else None
            extra["sslcontext"] = context
            extra["ssl_object"] = _SSLInfo(info.get("version"), info.get("alpn") or None,
                                           server_hostname, context)
            extra["peercert"] = {}
            extra["cipher"] = extra["ssl_object"].cipher()
            extra["compression"] = None
        protocol = protocol_factory()
        transport = HostTransport(self, cid, protocol, info, extra)
        protocol.connection_made(transport)
        return transport, protocol

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        return socket.getaddrinfo(host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr, flags=0):
        return (str(sockaddr[0]), str(sockaddr[1]))

    async def start_tls(self, transport, protocol, sslcontext, *, server_side=False,
                        server_hostname=None, ssl_handshake_timeout=None,
                        ssl_shutdown_timeout=None):
        if server_side:
            raise ssl.SSLError(1, "server-side TLS is not available in the sandbox")
        if not isinstance(transport, HostTransport):
            raise ssl.SSLError(1, "start_tls needs a connection of the sandbox's event loop")
        if transport._buffer:
            raise ssl.SSLError(1, "cannot start TLS with data left to send")
        if server_hostname is None:
            server_hostname = transport._extra.get("peername", ("",))[0]
        # The handshake runs on the host while the loop goes on; its outcome comes like an
        # asynchronous connect's (OP_WAIT "connected").
        transport.pause_reading()
        socket._call(OP_NET_TLS, {"id": transport._id, "server_hostname": server_hostname or "",  # noqa: F821
                                  "async": True})
        connects = _net_state(self._selector)[2]
        fut = connects[transport._id] = self.create_future()
        try:
            if ssl_handshake_timeout is not None:
                info = await asyncio.wait_for(fut, ssl_handshake_timeout)
            else:
                info = await fut
        except BaseException:
            connects.pop(transport._id, None)
            transport.abort()
            raise
        transport._set_tls(info.get("version"), info.get("alpn") or None, server_hostname,
                           sslcontext)
        transport.set_protocol(protocol)
        transport.resume_reading()
        return transport

    loop_class.create_connection = create_connection
    loop_class.getaddrinfo = getaddrinfo
    loop_class.getnameinfo = getnameinfo
    loop_class.start_tls = start_tls
