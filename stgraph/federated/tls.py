"""TLS of ``stgraph federated server`` / ``client`` (Flower's gRPC server and ``start_client``).

The server is given ``federated.certificates`` (CA certificate, server certificate, server key: PEM files,
Flower's ``certificates=(ca, cert, key)`` of its gRPC server); each client ``federated.root_certificates``
(the CA certificate that signed the server's, Flower's ``root_certificates=``), with which it refuses any
server whose certificate that CA did not sign or whose name/IP does not match the address. Without them
both run in plain gRPC, and only on a loopback address (:func:`~.config.check_loopback`).

Node authentication (Flower's ``--auth-keys``) is not available here: Flower 1.42's ``start_client`` /
gRPC bidirectional-stream transport does not support it (it belongs to the SuperLink / SuperNode
deployment), so TLS and the loopback rule are what these entry points enforce.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, MissingFileError

#: what each of ``federated.certificates`` is, in order
SERVER_FILES = ("the CA certificate", "the server's certificate", "the server's private key")


def _pem(path, field: str, what: str, expected: str) -> bytes:
    """The bytes of the PEM file ``path`` (``what`` of ``field``), refused with the file and field named."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise MissingFileError(f"{field}: '{p}' ({what}) not found; expected {expected}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{field}: '{p}' ({what}) cannot be read ({e.strerror or e}); expected {expected}") \
            from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{field}: '{p}' ({what}) is not a PEM file (no '-----BEGIN' line); expected {expected}")
    return data


def host_of(address) -> str:
    """The host of ``HOST:PORT`` (``[::1]:8080`` -> ``::1``); a :class:`~stgraph.errors.ConfigError` otherwise."""
    host, sep, port = str(address).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"federated.address = {address!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host


def is_loopback(address) -> bool:
    """Whether ``address`` (``HOST:PORT``) names this machine: ``127.x.x.x``, ``::1`` or ``localhost``."""
    import ipaddress

    host = host_of(address)
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _plain(fed, side: str, needs: str, instead: str) -> None:
    """Plain gRPC (no certificates given for ``side``): only on a loopback address."""
    if not is_loopback(fed.address):
        raise ConfigError(f"federated.address = {fed.address!r} is not a loopback address: the {side} needs "
                          f"TLS there; pass {needs}, or {instead}")


def server_certificates(fed) -> tuple[bytes, bytes, bytes] | None:
    """``(ca, cert, key)`` bytes of ``fed.certificates`` for Flower's gRPC server, or ``None`` (plain gRPC,
    only on a loopback ``fed.address``). Raises :class:`~stgraph.errors.MissingFileError` /
    :class:`~stgraph.errors.ConfigError` naming a file that is missing, unreadable or not PEM, and
    :class:`~stgraph.errors.ConfigError` for a non-loopback address without certificates."""
    expected = "federated.certificates CA_CERT SERVER_CERT SERVER_KEY (PEM files)"
    if not fed.certificates:
        return _plain(fed, "server", expected, "listen on 127.0.0.1")
    return tuple(_pem(path, "federated.certificates", what, expected)  # type: ignore[return-value]
                 for path, what in zip(fed.certificates, SERVER_FILES))


def client_root_certificates(fed) -> bytes | None:
    """The bytes of ``fed.root_certificates`` (the CA certificate a client checks the server's against),
    or ``None`` (plain gRPC, only on a loopback ``fed.address``); refusals as :func:`server_certificates`."""
    expected = "federated.root_certificates CA_CERT (the CA certificate that signed the server's, a PEM file)"
    if not fed.root_certificates:
        return _plain(fed, "client", expected, "connect to 127.0.0.1")
    return _pem(fed.root_certificates, "federated.root_certificates", "the CA certificate", expected)


def check_certificate_fields(fed) -> None:
    """The shapes of ``fed.certificates`` (three paths) and ``fed.root_certificates`` (one path)."""
    certs = fed.certificates
    if certs is not None and (not isinstance(certs, (list, tuple)) or len(certs) != 3
                              or not all(isinstance(c, str) and c for c in certs)):
        raise ConfigError(f"federated.certificates = {certs!r}: expected three paths CA_CERT SERVER_CERT "
                          f"SERVER_KEY (PEM files)")
    root = fed.root_certificates
    if root is not None and (not isinstance(root, str) or not root):
        raise ConfigError(f"federated.root_certificates = {root!r}: expected the path of the CA certificate "
                          f"(a PEM file)")
