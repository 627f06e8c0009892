"""Eryx select: the standard select module, whose select() and poll() also wait for the
sandbox's sockets (connections the host holds, asked about with a host call).

Other descriptors (files) are always ready, as in WASI.
"""

# Executed by the goeryx driver in a namespace pre-filled with the standard select module's
# public names, plus _eryx_call and the OP_NET_* numbers.

import socket as _socket_mod

_std_select = select  # noqa: F821 (the standard function, from the pre-filled namespace)
_std_poll = poll  # noqa: F821


def _resolve(obj):
    """The sandbox socket behind obj (a socket or its descriptor), or None."""
    fd = obj if isinstance(obj, int) else obj.fileno()
    return _socket_mod._by_fd.get(fd), fd


def _host_poll(recv, send, timeout):
    timeout_ns = -1 if timeout is None else max(0, int(timeout * 1e9))
    h, _ = _socket_mod._call(OP_NET_POLL, {"recv": recv, "send": send,  # noqa: F821
                                           "timeout_ns": timeout_ns})
    return set(h.get("readable") or ()), set(h.get("writable") or ())


def select(rlist, wlist, xlist, timeout=None):
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be non-negative")
    ours_r = [(o, _resolve(o)[0]) for o in rlist]
    ours_w = [(o, _resolve(o)[0]) for o in wlist]
    if not any(s is not None for _, s in ours_r + ours_w):
        return _std_select(rlist, wlist, xlist, timeout)
    # Other descriptors are files: ready at once.
    others_r = [o for o, s in ours_r if s is None]
    others_w = [o for o, s in ours_w if s is None]
    wait = 0 if (others_r or others_w) else timeout
    readable, writable = _host_poll([s._id for _, s in ours_r if s is not None and s._id is not None],
                                    [s._id for _, s in ours_w if s is not None and s._id is not None],
                                    wait)
    r = others_r + [o for o, s in ours_r if s is not None and (s._id is None or s._id in readable)]
    w = others_w + [o for o, s in ours_w if s is not None and (s._id is None or s._id in writable)]
    return r, w, []


class poll:
    """select.poll that understands the sandbox's sockets."""

    def __init__(self):
        self._fds = {}

    def register(self, fd, eventmask=POLLIN | POLLPRI | POLLOUT):  # noqa: F821
        sock, fd = _resolve(fd)
        self._fds[fd] = (sock, eventmask)

    def modify(self, fd, eventmask):
        sock, fd = _resolve(fd)
        if fd not in self._fds:
            raise FileNotFoundError(2, "No such file or directory")
        self._fds[fd] = (sock, eventmask)

    def unregister(self, fd):
        _, fd = _resolve(fd)
        del self._fds[fd]

    def poll(self, timeout=None):
        if timeout is not None and timeout >= 0:
            timeout = timeout / 1000
        else:
            timeout = None
        ours = {fd: v for fd, v in self._fds.items() if v[0] is not None}
        others = {fd: v for fd, v in self._fds.items() if v[0] is None}
        if not ours:
            p = _std_poll()
            for fd, (_, mask) in others.items():
                p.register(fd, mask)
            return p.poll(None if timeout is None else timeout * 1000)
        out = []
        for fd, (_, mask) in others.items():
            events = mask & (POLLIN | POLLOUT)  # noqa: F821 (files are always ready)
            if events:
                out.append((fd, events))
        recv = [s._id for s, mask in ours.values() if s._id is not None and mask & POLLIN]  # noqa: F821
        send = [s._id for s, mask in ours.values() if s._id is not None and mask & POLLOUT]  # noqa: F821
        readable, writable = _host_poll(recv, send, 0 if out else timeout)
        for fd, (s, mask) in ours.items():
            if s._id is None:
                out.append((fd, POLLNVAL))  # noqa: F821
                continue
            events = 0
            if mask & POLLIN and s._id in readable:  # noqa: F821
                events |= POLLIN  # noqa: F821
            if mask & POLLOUT and s._id in writable:  # noqa: F821
                events |= POLLOUT  # noqa: F821
            if events:
                out.append((fd, events))
        return out


for _name in ("epoll", "kqueue", "devpoll"):
    globals().pop(_name, None)
del _name
