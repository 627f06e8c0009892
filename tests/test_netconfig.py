"""NetConfig as a value object (API.md §3.1, §12)."""

import copy
import pickle
import ssl

import pytest

import eryx
from _eryxtest import DEFAULT_BLOCKED_HOSTS

# Two self-signed test CA certificates (EC P-256, CN=eryx-test-root-1/2), made
# with openssl for this suite.  They are only ever parsed, never trusted.
TEST_CERT_PEM_1 = b"""-----BEGIN CERTIFICATE-----
MIIBjDCCATOgAwIBAgIUKRKiQkeU1pZAn1KR4xnWZKbwRzcwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQZXJ5eC10ZXN0LXJvb3QtMTAgFw0yNjExMjkyMjQwMDlaGA8y
MTI2MTEwNTIyNDAwOVowGzEZMBcGA1UEAwwQZXJ5eC10ZXN0LXJvb3QtMTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABHKBbXa0ZNRZqNsO9YOJUwbUc5P0Nhm3IykY
dJxs9A+ePAz3W02LRJT7hN5nm/tClNj5AFPBTYCUawOcYdfDA1GjUzBRMB0GA1Ud
DgQWBBQ05KRh8lW+a6HYYo9+kDNztQ8YbzAfBgNVHSMEGDAWgBQ05KRh8lW+a6HY
Yo9+kDNztQ8YbzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIGw+
NuNOKPCX+elGTK7JmqZXxC1R50vrZMpwhdRWx0j9AiAUU5CPZBA4eJAEAPx2GBHh
U7IU9RezZPmAh1XiejGAzg==
-----END CERTIFICATE-----
"""

TEST_CERT_PEM_2 = b"""-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUWdgpO1Z/jnW5oFkpwnaJNhYb+8cwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQZXJ5eC10ZXN0LXJvb3QtMjAgFw0yNjExMjkyMjQwMDlaGA8y
MTI2MTEwNTIyNDAwOVowGzEZMBcGA1UEAwwQZXJ5eC10ZXN0LXJvb3QtMjBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABKhhXad+TJQGoFlTJ6AAK1XS/5p168sgY7io
V4zEtZz0h3XCUKIP/dtvNwhoUl8VzlvNR3YnSf+Zz+aYGlEUDbGjUzBRMB0GA1Ud
DgQWBBSTRwDKYu3ZMy0j3vCfDoLs6ds2XDAfBgNVHSMEGDAWgBSTRwDKYu3ZMy0j
3vCfDoLs6ds2XDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQDx
xo6ifeHvQM5PZnKQYU66k+2SgHqZkXh2c0hmdU+Z7gIgFu2kYF/TCLDEFZ35urel
sayxj+PNwzVsGqlBhotfzvI=
-----END CERTIFICATE-----
"""

TEST_CERT_DER_1 = ssl.PEM_cert_to_DER_cert(TEST_CERT_PEM_1.decode())

DEFAULT_REPR = (
    "NetConfig(max_connections=10, connect_timeout_ms=30000, io_timeout_ms=60000, "
    "allowed_hosts=[], blocked_hosts=['localhost', '*.localhost', '127.*', ... (20 more)])"
)


def test_defaults():
    cfg = eryx.NetConfig()
    assert cfg.max_connections == 10
    assert cfg.connect_timeout_ms == 30000
    assert cfg.io_timeout_ms == 60000
    assert cfg.allowed_hosts == []
    assert cfg.blocked_hosts == DEFAULT_BLOCKED_HOSTS
    assert len(cfg.blocked_hosts) == 23
    assert cfg.allow_all_hosts is True


def test_default_repr_exact():
    assert repr(eryx.NetConfig()) == DEFAULT_REPR


def test_none_lists_give_defaults():
    cfg = eryx.NetConfig(allowed_hosts=None, blocked_hosts=None)
    assert cfg == eryx.NetConfig()
    assert cfg.blocked_hosts == DEFAULT_BLOCKED_HOSTS


def test_custom_values_and_short_lists_printed_in_full():
    cfg = eryx.NetConfig(max_connections=3, connect_timeout_ms=100, io_timeout_ms=200,
                         allowed_hosts=["api.example.com", "*.example.org"],
                         blocked_hosts=("bad.example.com",))
    assert cfg.max_connections == 3
    assert cfg.connect_timeout_ms == 100
    assert cfg.io_timeout_ms == 200
    assert cfg.allowed_hosts == ["api.example.com", "*.example.org"]
    assert cfg.blocked_hosts == ["bad.example.com"]
    assert cfg.allow_all_hosts is False
    assert repr(cfg) == (
        "NetConfig(max_connections=3, connect_timeout_ms=100, io_timeout_ms=200, "
        "allowed_hosts=['api.example.com', '*.example.org'], "
        "blocked_hosts=['bad.example.com'])"
    )


def test_repr_list_abbreviation_threshold():
    five = [f"h{i}.example.com" for i in range(5)]
    six = [f"h{i}.example.com" for i in range(6)]
    cfg5 = eryx.NetConfig(allowed_hosts=five, blocked_hosts=[])
    assert repr(cfg5) == (
        "NetConfig(max_connections=10, connect_timeout_ms=30000, io_timeout_ms=60000, "
        f"allowed_hosts={five!r}, blocked_hosts=[])"
    )
    cfg6 = eryx.NetConfig(allowed_hosts=six, blocked_hosts=[])
    assert repr(cfg6) == (
        "NetConfig(max_connections=10, connect_timeout_ms=30000, io_timeout_ms=60000, "
        "allowed_hosts=['h0.example.com', 'h1.example.com', 'h2.example.com', ... (3 more)], "
        "blocked_hosts=[])"
    )


def test_list_getters_return_copies():
    cfg = eryx.NetConfig()
    blocked = cfg.blocked_hosts
    blocked.clear()
    allowed = cfg.allowed_hosts
    allowed.append("evil.example.com")
    assert cfg.blocked_hosts == DEFAULT_BLOCKED_HOSTS
    assert cfg.allowed_hosts == []
    assert cfg.blocked_hosts is not cfg.blocked_hosts


def test_input_lists_are_copied():
    hosts = ["a.example.com"]
    cfg = eryx.NetConfig(allowed_hosts=hosts)
    hosts.append("b.example.com")
    assert cfg.allowed_hosts == ["a.example.com"]


def test_allow_all_hosts_is_read_only_and_not_a_constructor_argument():
    cfg = eryx.NetConfig()
    with pytest.raises(AttributeError):
        cfg.allow_all_hosts = False
    with pytest.raises(TypeError):
        eryx.NetConfig(allow_all_hosts=True)


def test_allow_host_appends_in_place_and_returns_self():
    cfg = eryx.NetConfig()
    assert cfg.allow_host("api.example.com") is cfg
    assert cfg.allowed_hosts == ["api.example.com"]
    assert cfg.allow_all_hosts is False
    assert cfg.allow_host("*.example.org") is cfg
    assert cfg.allow_host("api.example.com") is cfg  # already there: not duplicated
    assert cfg.allowed_hosts == ["api.example.com", "*.example.org"]
    assert cfg.blocked_hosts == DEFAULT_BLOCKED_HOSTS


def test_block_host_appends_in_place_and_returns_self():
    cfg = eryx.NetConfig(blocked_hosts=[])
    assert cfg.block_host("evil.example.com") is cfg
    assert cfg.block_host("*.tracker.example") is cfg
    assert cfg.block_host("evil.example.com") is cfg
    assert cfg.blocked_hosts == ["evil.example.com", "*.tracker.example"]
    default = eryx.NetConfig()
    default.block_host("localhost")  # already a default
    assert default.blocked_hosts == DEFAULT_BLOCKED_HOSTS


def test_methods_chain():
    cfg = eryx.NetConfig().allow_host("a.example.com").block_host("b.example.com").allow_host(
        "c.example.com")
    assert cfg.allowed_hosts == ["a.example.com", "c.example.com"]
    assert cfg.blocked_hosts == DEFAULT_BLOCKED_HOSTS + ["b.example.com"]


def test_allow_localhost_removes_only_loopback_patterns():
    cfg = eryx.NetConfig()
    assert cfg.allow_localhost() is cfg
    expected = [p for p in DEFAULT_BLOCKED_HOSTS
                if p not in ("localhost", "*.localhost", "127.*", "[::1]")]
    assert cfg.blocked_hosts == expected
    assert len(expected) == 19
    assert "10.*" in cfg.blocked_hosts and "192.168.*" in cfg.blocked_hosts


def test_allow_localhost_rule_on_custom_patterns():
    cfg = eryx.NetConfig(blocked_hosts=[
        "my.localhost.example", "127.0.0.1", "x127.example", "[::1]:8080", "::1x",
        "evil.example.com", "10.*",
    ])
    cfg.allow_localhost()
    assert cfg.blocked_hosts == ["x127.example", "evil.example.com", "10.*"]


def test_permissive():
    cfg = eryx.NetConfig.permissive()
    assert isinstance(cfg, eryx.NetConfig)
    assert cfg.max_connections == 100
    assert cfg.connect_timeout_ms == 30000
    assert cfg.io_timeout_ms == 60000
    assert cfg.allowed_hosts == []
    assert cfg.blocked_hosts == []
    assert cfg.allow_all_hosts is True
    assert repr(cfg) == (
        "NetConfig(max_connections=100, connect_timeout_ms=30000, io_timeout_ms=60000, "
        "allowed_hosts=[], blocked_hosts=[])"
    )
    assert eryx.NetConfig.permissive() is not eryx.NetConfig.permissive()


def test_with_root_cert_pem_and_der():
    cfg = eryx.NetConfig()
    assert cfg.with_root_cert(TEST_CERT_PEM_1) is cfg
    assert repr(cfg) == DEFAULT_REPR[:-1] + ", root_certs=1)"
    assert cfg != eryx.NetConfig()

    der = eryx.NetConfig().with_root_cert(TEST_CERT_DER_1)
    assert repr(der) == DEFAULT_REPR[:-1] + ", root_certs=1)"

    both = eryx.NetConfig().with_root_cert(TEST_CERT_PEM_1).with_root_cert(TEST_CERT_PEM_2)
    assert repr(both) == DEFAULT_REPR[:-1] + ", root_certs=2)"


def test_with_root_cert_pem_bundle_counts_every_certificate():
    cfg = eryx.NetConfig().with_root_cert(TEST_CERT_PEM_1 + TEST_CERT_PEM_2)
    assert repr(cfg) == DEFAULT_REPR[:-1] + ", root_certs=2)"


def test_root_certs_take_part_in_equality():
    a = eryx.NetConfig().with_root_cert(TEST_CERT_PEM_1)
    b = eryx.NetConfig().with_root_cert(TEST_CERT_PEM_1)
    c = eryx.NetConfig().with_root_cert(TEST_CERT_PEM_2)
    assert a == b
    assert a != c
    assert a != eryx.NetConfig()


@pytest.mark.parametrize("bad", [
    b"not a certificate",
    b"",
    b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    TEST_CERT_DER_1[:-10],
    TEST_CERT_PEM_1.replace(b"MIIB", b"AAAA"),
])
def test_with_root_cert_rejects_unparsable_input(bad):
    cfg = eryx.NetConfig()
    with pytest.raises(ValueError):
        cfg.with_root_cert(bad)
    assert cfg == eryx.NetConfig()
    assert repr(cfg) == DEFAULT_REPR


def test_equality_compares_every_field():
    assert eryx.NetConfig() == eryx.NetConfig()
    variants = [
        eryx.NetConfig(max_connections=11),
        eryx.NetConfig(connect_timeout_ms=1),
        eryx.NetConfig(io_timeout_ms=1),
        eryx.NetConfig(allowed_hosts=["a.example.com"]),
        eryx.NetConfig(blocked_hosts=[]),
        eryx.NetConfig(blocked_hosts=list(reversed(DEFAULT_BLOCKED_HOSTS))),
    ]
    for v in variants:
        assert v != eryx.NetConfig(), repr(v)
        assert not (v == eryx.NetConfig())
    assert eryx.NetConfig() != object()


def test_unhashable():
    with pytest.raises(TypeError):
        hash(eryx.NetConfig())


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy,
                                    lambda o: pickle.loads(pickle.dumps(o))])
def test_copy_deepcopy_pickle(copier):
    cfg = eryx.NetConfig(max_connections=4, allowed_hosts=["a.example.com"])
    cfg.with_root_cert(TEST_CERT_PEM_1)
    dup = copier(cfg)
    assert type(dup) is eryx.NetConfig
    assert dup is not cfg
    assert dup == cfg
    assert repr(dup) == repr(cfg)
    dup.allow_host("b.example.com")
    assert cfg.allowed_hosts == ["a.example.com"]


def test_mutable_integer_fields_validate_on_assignment():
    cfg = eryx.NetConfig()
    cfg.max_connections = 0  # 0 = no limit
    assert cfg.max_connections == 0
    cfg.connect_timeout_ms = 1
    cfg.io_timeout_ms = 1
    assert (cfg.connect_timeout_ms, cfg.io_timeout_ms) == (1, 1)
    with pytest.raises(ValueError, match="connect_timeout_ms"):
        cfg.connect_timeout_ms = 0
    with pytest.raises(ValueError, match="io_timeout_ms"):
        cfg.io_timeout_ms = 0
    with pytest.raises(ValueError, match="max_connections"):
        cfg.max_connections = -1
    with pytest.raises(TypeError, match="max_connections"):
        cfg.max_connections = True
    assert (cfg.max_connections, cfg.connect_timeout_ms, cfg.io_timeout_ms) == (0, 1, 1)


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"max_connections": -1}, ValueError, "max_connections"),
    ({"connect_timeout_ms": 0}, ValueError, "connect_timeout_ms"),
    ({"io_timeout_ms": 0}, ValueError, "io_timeout_ms"),
    ({"io_timeout_ms": -5}, ValueError, "io_timeout_ms"),
    ({"max_connections": 1.0}, TypeError, "max_connections"),
    ({"max_connections": True}, TypeError, "max_connections"),
    ({"connect_timeout_ms": "10"}, TypeError, "connect_timeout_ms"),
    ({"io_timeout_ms": None}, TypeError, "io_timeout_ms"),
    ({"max_connections": None}, TypeError, "max_connections"),
])
def test_integer_field_validation(kwargs, exc, name):
    with pytest.raises(exc) as ei:
        eryx.NetConfig(**kwargs)
    assert name in str(ei.value)


@pytest.mark.parametrize("bad", ["", "a b", "a/b", "tab\there", "x" * 256, "new\nline"])
def test_invalid_host_patterns_rejected(bad):
    expected = f"invalid host pattern {bad!r}"
    for make in (lambda: eryx.NetConfig(allowed_hosts=[bad]),
                 lambda: eryx.NetConfig(blocked_hosts=["ok.example.com", bad]),
                 lambda: eryx.NetConfig().allow_host(bad),
                 lambda: eryx.NetConfig().block_host(bad)):
        with pytest.raises(ValueError) as ei:
            make()
        if bad.isprintable():
            assert str(ei.value) == expected
        else:
            assert "invalid host pattern" in str(ei.value)


def test_nul_in_host_pattern_rejected():
    with pytest.raises(ValueError, match="invalid host pattern"):
        eryx.NetConfig(allowed_hosts=["a\x00b"])
    with pytest.raises(ValueError, match="invalid host pattern"):
        eryx.NetConfig().block_host("a\x00b")


def test_rejected_pattern_leaves_config_unchanged():
    cfg = eryx.NetConfig()
    with pytest.raises(ValueError):
        cfg.allow_host("bad host")
    with pytest.raises(ValueError):
        cfg.block_host("bad/host")
    assert cfg == eryx.NetConfig()


def test_longest_valid_pattern_and_special_characters_accepted():
    longest = "a" * 255
    cfg = eryx.NetConfig(allowed_hosts=[longest, "[::1]", "*", "exa[mple].com"])
    assert cfg.allowed_hosts == [longest, "[::1]", "*", "exa[mple].com"]


@pytest.mark.parametrize("bad", ["example.com", 5, [5], ["ok.example.com", None],
                                 {"a.example.com"}])
def test_host_lists_must_be_list_or_tuple_of_str(bad):
    with pytest.raises(TypeError):
        eryx.NetConfig(allowed_hosts=bad)
    with pytest.raises(TypeError):
        eryx.NetConfig(blocked_hosts=bad)


@pytest.mark.parametrize("bad", [5, None, b"example.com"])
def test_pattern_methods_require_str(bad):
    with pytest.raises(TypeError):
        eryx.NetConfig().allow_host(bad)
    with pytest.raises(TypeError):
        eryx.NetConfig().block_host(bad)


def test_keyword_only():
    with pytest.raises(TypeError):
        eryx.NetConfig(10)


def test_sandbox_copies_netconfig():
    cfg = eryx.NetConfig(max_connections=3)
    sb = eryx.Sandbox(network=cfg)
    try:
        cfg.max_connections = 50
        cfg.allow_host("late.example.com")
        r = repr(sb)
        assert "network=NetConfig(max_connections=3," in r
        assert "late.example.com" not in r
    finally:
        sb.close()
