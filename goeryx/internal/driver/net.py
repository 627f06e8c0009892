

# ---------------------------------------------------------------------------------------------
# Guest networking (API.md §3.4; goeryx/internal/net does the work on the host). The socket
# and ssl modules are shims whose sources (guest_socket.py, guest_ssl.py) the engine embeds as
# _NET_SOCKET_SRC and _NET_SSL_SRC; they are installed in sys.modules when the driver boots,
# so that asyncio, http.client and user code import them, and they are part of the image.


def _net_module(name, source, base):
    mod = types.ModuleType(name)
    ns = mod.__dict__
    ns.update(base)
    ns["_eryx_call"] = _host_call
    for key, value in globals().items():
        if key.startswith("OP_NET_"):
            ns[key] = value
    exec(compile(source, "<eryx %s>" % name, "exec"), ns)
    return mod


def _net_install():
    import socket as std_socket  # the standard module: constants, enums, SocketIO, exceptions

    base = {k: v for k, v in vars(std_socket).items() if not k.startswith("__")}
    sys.modules["socket"] = _net_module("socket", _NET_SOCKET_SRC, base)  # noqa: F821
    sys.modules["ssl"] = _net_module("ssl", _NET_SSL_SRC, {})  # noqa: F821


_net_install()
