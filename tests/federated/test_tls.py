"""TLS of the gRPC server and clients: a federation over TLS on 127.0.0.1 completes, a client without the CA
cannot join (a FederationError, not a hang), certificate files that are missing or not PEM and a non-loopback
address without certificates are refused, naming the file and the flag."""
import datetime
import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stgraph.cli.main import main
from stgraph.errors import ConfigError, FederationError, MissingFileError

pytest.importorskip("flwr")
pytest.importorskip("cryptography")
ROOT = Path(__file__).resolve().parents[2]
SMALL = ["model.params.hidden=8", "model.params.heads=2", "model.params.encoder_layers=1",
         "model.params.decoder_layers=1", "train.batch_size=16", "train.max_batches=2", "train.device=cpu",
         "train.threads=1", "train.progress=false"]


def _cert(subject, issuer, key, sign_key, *, ca: bool, sans=()):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return b.sign(sign_key, hashes.SHA256())


def make_certificates(folder: Path, name: str = "ca") -> dict:
    """A self-signed CA and a server certificate it signs for 127.0.0.1 / localhost, PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert(f"stgraph test {name}", f"stgraph test {name}", ca_key, ca_key, ca=True)
    server = _cert("localhost", f"stgraph test {name}", key, ca_key, ca=False,
                   sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    files = {"ca": folder / f"{name}.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return {k: str(v) for k, v in files.items()}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls"))


def _cfg(tiny_synth):
    from stgraph.api import run_config
    return run_config(data=str(tiny_synth["data"]), graph=str(tiny_synth["adj"]), overrides=SMALL, progress=False)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------------- refusals
def test_non_loopback_needs_certificates_and_names_the_flag(certs, tmp_path, capsys):
    from stgraph.federated.config import FederatedConfig
    from stgraph.federated.tls import client_root_certificates, server_certificates
    with pytest.raises(ConfigError, match="only a loopback address .* federated.certificates CA_CERT"):
        FederatedConfig(address="0.0.0.0:8080").validate()
    server = FederatedConfig(address="0.0.0.0:8080", certificates=[certs["ca"], certs["cert"], certs["key"]])
    assert server.validate() == server and len(server_certificates(server)) == 3
    client = FederatedConfig(address="10.1.2.3:8080", root_certificates=certs["ca"]).validate()
    assert client_root_certificates(client).startswith(b"-----BEGIN CERTIFICATE")
    # each side needs its own: a server given only the CA, a client given only server certificates
    with pytest.raises(ConfigError, match="the server needs TLS there; pass federated.certificates"):
        server_certificates(client)
    with pytest.raises(ConfigError, match="the client needs TLS there; pass federated.root_certificates"):
        client_root_certificates(server)
    assert server_certificates(FederatedConfig()) is None and client_root_certificates(FederatedConfig()) is None
    with pytest.raises(ConfigError, match="federated.certificates = .*expected three paths"):
        FederatedConfig(certificates=[certs["ca"]]).validate()
    # the command line says it with flags
    assert main(["federated", "server", "--out", str(tmp_path / "s"), "--address", "0.0.0.0:8080"]) == 2
    err = capsys.readouterr().err
    assert "only a loopback address" in err and "--certificates CA_CERT SERVER_CERT SERVER_KEY" in err
    assert "--root-certificates CA_CERT" in err and not (tmp_path / "s").exists()


def test_missing_or_unreadable_certificate_files_are_refused_by_name(certs, tiny_synth, tmp_path, capsys):
    from stgraph.federated.config import FederatedConfig
    from stgraph.federated.flower import serve
    from stgraph.federated.remote import take_part
    missing = str(tmp_path / "nope.key")
    fed = FederatedConfig(certificates=[certs["ca"], certs["cert"], missing]).validate()
    with pytest.raises(MissingFileError, match=r"federated.certificates: '.*nope.key' \(the server's private key\)"):
        serve(fed, tmp_path / "server")
    assert not (tmp_path / "server").exists()
    notpem = tmp_path / "ca.txt"
    notpem.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"federated.root_certificates: '.*ca.txt' .* is not a PEM file"):
        take_part(FederatedConfig(clients=1, root_certificates=str(notpem)).validate(), _cfg(tiny_synth), tmp_path / "c", 0)
    with pytest.raises(MissingFileError, match=r"federated.root_certificates: '.*absent.pem' \(the CA certificate\)"):
        take_part(FederatedConfig(clients=1, root_certificates=str(tmp_path / "absent.pem")).validate(), _cfg(tiny_synth),
                  tmp_path / "c", 0)
    assert not (tmp_path / "c").exists()
    out = str(tmp_path / "cli")
    assert main(["federated", "server", "--out", out, "--certificates", certs["ca"], missing, certs["key"]]) == 2
    err = capsys.readouterr().err
    assert "--certificates: '" in err and "nope.key' (the server's certificate) not found" in err
    assert main(["federated", "client", "--out", out, "--partition-id", "0", "--data", str(tiny_synth["data"]), "--graph",
                 str(tiny_synth["adj"]), "--root-certificates", missing]) == 2
    assert "--root-certificates: '" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- a federation
def test_a_federation_over_tls_completes_and_a_client_without_the_ca_cannot_join(certs, tiny_synth, tmp_path):
    """A TLS server on 127.0.0.1 and one client given the CA: the rounds complete. Before it, a client in plain
    gRPC and one trusting another CA are refused within their --max-wait (FederationError), not left waiting."""
    from stgraph.federated.config import FederatedConfig
    from stgraph.federated.remote import take_part
    port = _port()
    out = tmp_path / "fed"
    common = ["--clients", "1", "--rounds", "1", "--out", str(out), "--address", f"127.0.0.1:{port}",
              "--round-timeout", "60"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "stgraph.cli.main", "federated"]
    server = subprocess.Popen(cli + ["server", *common, "--certificates", certs["ca"], certs["cert"], certs["key"]],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = None
    try:
        other = make_certificates(tmp_path / "other", name="other-ca")
        for root, says in ((None, "pass federated.root_certificates"), (other["ca"], "signed by")):
            fed = FederatedConfig(clients=1, partition="random", rounds=1, address=f"127.0.0.1:{port}",
                                  root_certificates=root).validate()
            with pytest.raises(FederationError, match=f"the server at 127.0.0.1:{port} could not be reached.*{says}"):
                take_part(fed, _cfg(tiny_synth), tmp_path / "intruder", 0, max_wait=3)
        assert server.poll() is None  # the server still waits for its client
        client = subprocess.Popen(cli + ["client", *common, "--partition-id", "0", "--partition", "random",
                                         "--root-certificates", certs["ca"], "--max-wait", "30", "--data",
                                         str(tiny_synth["data"]), "--graph", str(tiny_synth["adj"]),
                                         *[x for s in SMALL for x in ("--set", s)]],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        logs = [p.communicate(timeout=120)[0] for p in (server, client)]
    finally:
        for p in (server, client):
            if p is not None and p.poll() is None:
                p.kill()
    assert server.returncode == 0, logs[0][-3000:]
    assert "server finished 1 round(s)" in logs[0]
    assert client.returncode == 0 and "client 0 done" in logs[1], logs[1][-3000:]
    assert (out / "server" / "global_shared.npz").is_file()
