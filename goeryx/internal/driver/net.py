

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
    pollers = getattr(selector, "_net_poll", None)
    if pollers:
        header["poll"] = list(pollers)
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
    pollers = getattr(selector, "_net_poll", None)
    for cid in net.get("readable") or ():
        for fut in pollers.pop(cid, ()) if pollers else ():
            if not fut.done():
                fut.set_result(None)


def _net_extend_loop(loop_class):
    import asyncio
    import errno
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
        _check_local_addr(local_addr)
        if sock is not None:
            if host is not None or port is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            sock_ssl = ssl
            host, port, cid, info = _adopt_socket(sock)
            ssl = None  # the connection is plain until the handshake below
        else:
            sock_ssl = None
            if host is None or port is None:
                raise ValueError("host and port was not specified and no sock specified")
            if ssl and server_hostname is None:
                server_hostname = host
            cid, info = await _connect_async(self, host, port, bool(ssl), server_hostname)
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
        if sock_ssl:
            # TLS on the adopted connection, then the protocol (as asyncio does with sock=).
            if server_hostname is None:
                server_hostname = host
            transport = HostTransport(self, cid, None, info, extra)
            context = sock_ssl if isinstance(sock_ssl, sys.modules["ssl"].SSLContext) else None
            protocol = protocol_factory()
            await self.start_tls(transport, protocol, context, server_hostname=server_hostname,
                                 ssl_handshake_timeout=ssl_handshake_timeout)
            protocol.connection_made(transport)
            return transport, protocol
        protocol = protocol_factory()
        transport = HostTransport(self, cid, protocol, info, extra)
        protocol.connection_made(transport)
        return transport, protocol

    def _check_local_addr(local_addr):
        # The host chooses the local address and port: only "any address, any port" (what
        # it does anyway) is accepted.
        if local_addr is None:
            return
        if not isinstance(local_addr, tuple) or len(local_addr) < 2 \
                or local_addr[0] not in (None, "", "0.0.0.0", "::") or local_addr[1] not in (None, 0):
            raise OSError(errno.EADDRNOTAVAIL, "local_addr %r is not available in the sandbox: the host chooses the "
                              "local address (only ('0.0.0.0', 0) is accepted)" % (local_addr,))

    def _adopt_socket(sock):
        """The connection of a connected sandbox socket, for a transport: the socket object
        lets go of it (the transport closes it)."""
        if not isinstance(sock, socket.socket):
            raise TypeError("sock must be a socket of the sandbox, not %s" % type(sock).__name__)
        if sock.type != socket.SOCK_STREAM:
            raise ValueError("A Stream Socket was expected, got %r" % (sock,))
        cid = sock._check()
        info = {"id": cid, "peer": "%s:%d" % sock._peer if sock._peer else "",
                "version": sock._tls_version, "alpn": sock._alpn}
        host, port = sock._peer or ("", 0)
        sock.detach()
        return host, port, cid, info

    async def _connect_async(loop, host, port, tls, server_hostname):
        h, _ = socket._call(OP_NET_CONNECT, {  # noqa: F821
            "host": socket._host_of(host), "port": socket._port_of(port), "tls": tls,
            "server_hostname": server_hostname or "", "async": True})
        cid = h["id"]
        connects = _net_state(loop._selector)[2]
        fut = connects[cid] = loop.create_future()
        try:
            info = await fut
        except BaseException:
            if connects.pop(cid, None) is None and fut.done() and not fut.cancelled() \
                    and fut.exception() is None:
                _host_call(OP_NET_CLOSE, {"id": cid})  # noqa: F821
            raise
        return cid, info

    # loop.sock_*: the sandbox's sockets on the event loop. Reads and writes do not block
    # (OP_NET_READ / OP_NET_SEND nonblock); the loop waits in OP_WAIT for a connection to
    # become readable ("poll") or to have room to send ("send").

    class _WriteWaiter:
        __slots__ = ("_loop", "_fut")

        def __init__(self, loop):
            self._loop, self._fut = loop, loop.create_future()

        def _flush(self):
            if not self._fut.done():
                self._fut.set_result(None)

    def _sock_of(sock):
        if not isinstance(sock, socket.socket):
            raise TypeError("sock must be a socket of the sandbox, not %s" % type(sock).__name__)
        return sock

    async def _readable(loop, cid):
        pollers = loop._selector.__dict__.setdefault("_net_poll", {})
        fut = loop.create_future()
        waiting = pollers.setdefault(cid, [])
        waiting.append(fut)
        try:
            await fut
        finally:
            if fut in waiting:
                waiting.remove(fut)
            if not waiting and pollers.get(cid) is waiting:
                del pollers[cid]

    async def sock_recv(self, sock, n):
        sock = _sock_of(sock)
        while True:
            try:
                return sock._recv(n, NET_READ_NONBLOCK)  # noqa: F821
            except BlockingIOError:
                await _readable(self, sock._check())

    async def sock_recv_into(self, sock, buf):
        sock = _sock_of(sock)
        while True:
            try:
                return sock._recv_into(buf, 0, NET_READ_NONBLOCK)  # noqa: F821
            except BlockingIOError:
                await _readable(self, sock._check())

    async def sock_recvfrom(self, sock, bufsize):
        return await self.sock_recv(sock, bufsize), sock._peer

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        view = memoryview(buf).cast("B")
        return await self.sock_recv_into(sock, view[: nbytes or len(view)]), sock._peer

    async def sock_sendall(self, sock, data):
        sock = _sock_of(sock)
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            n = sock._send(view[sent:], b',"nonblock":true')
            sent += n
            if not n:
                cid = sock._check()
                writers = _net_state(self._selector)[1]
                waiter = writers[cid] = _WriteWaiter(self)
                try:
                    await waiter._fut
                finally:
                    if writers.get(cid) is waiter:
                        del writers[cid]

    async def sock_sendto(self, sock, data, address):
        raise socket._unsupported("sendto")

    async def sock_connect(self, sock, address):
        sock = _sock_of(sock)
        if sock._closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if sock._id is not None:
            raise OSError(errno.EISCONN, "Transport endpoint is already connected")
        if not isinstance(address, tuple) or len(address) < 2:
            raise TypeError("AF_INET address must be tuple, not %s" % type(address).__name__)
        host, port = socket._host_of(address[0]), socket._port_of(address[1])
        cid, info = await _connect_async(self, host, port, False, None)
        sock._adopt(info, host, port)

    async def sock_accept(self, sock):
        raise socket._unsupported("accept")

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
    for f in (sock_recv, sock_recv_into, sock_recvfrom, sock_recvfrom_into, sock_sendall,
              sock_sendto, sock_connect, sock_accept):
        setattr(loop_class, f.__name__, f)
    loop_class.getaddrinfo = getaddrinfo
    loop_class.getnameinfo = getnameinfo
    loop_class.start_tls = start_tls
