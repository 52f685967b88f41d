"""Test-only network guard. Python runs this file at start-up in every process
whose PYTHONPATH holds tests/netguard (the processes a run starts inherit it).
With STYLETUNE_NETGUARD_LOG set, any attempt to reach a non-loopback address
(name lookup, connect, sendto) is refused as an unreachable network and
recorded in that file with the stack that made it, so a test can assert that
a run made none. Loopback and Unix sockets stay allowed (llama-server, torch
distributed's store)."""
import errno
import ipaddress
import os
import socket
import traceback

LOG_ENV = "STYLETUNE_NETGUARD_LOG"
LOCAL_NAMES = {"", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _is_local(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = host.split("%")[0]  # an IPv6 scope id
    if host in LOCAL_NAMES or host == socket.gethostname():
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.endswith(".localhost")
    return address.is_loopback or address.is_unspecified


def _refuse(what: str):
    stack = "".join(traceback.format_stack(limit=12)[:-2])
    with open(os.environ[LOG_ENV], "a", encoding="utf-8") as log:
        log.write(f"pid {os.getpid()}: {what}\n{stack}\n")
    raise OSError(errno.ENETUNREACH, f"network blocked by the test guard ({what})")


def _inet(sock) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6)


def install() -> None:
    real_getaddrinfo = socket.getaddrinfo
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_sendto = socket.socket.sendto

    def getaddrinfo(host, port, *args, **kwargs):
        if not _is_local(host):
            _refuse(f"getaddrinfo({host!r}, {port!r})")
        return real_getaddrinfo(host, port, *args, **kwargs)

    def connect(self, address):
        if _inet(self) and not _is_local(address[0]):
            _refuse(f"connect({address!r})")
        return real_connect(self, address)

    def connect_ex(self, address):
        if _inet(self) and not _is_local(address[0]):
            _refuse(f"connect_ex({address!r})")
        return real_connect_ex(self, address)

    def sendto(self, data, *flags_and_address):
        address = flags_and_address[-1]
        if _inet(self) and not _is_local(address[0]):
            _refuse(f"sendto({address!r})")
        return real_sendto(self, data, *flags_and_address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.socket.sendto = sendto


if os.environ.get(LOG_ENV):
    install()
