"""The local certificate authority and mutual TLS for the mesh.

On one machine ``orchestrall up`` makes a CA and one certificate per workload.
Each certificate carries the workload's SPIFFE ID as a URI SAN
(``spiffe://<trust-domain>/ns/<ns>/sa/<name>``, SPIFFE X.509-SVID spec section 2)
and DNS SANs (``<name>``, ``localhost``), because Python gRPC clients verify the
hostname. In a cluster Istio's sidecars do this job and the services listen in
plaintext behind them.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_LIFETIME = dt.timedelta(days=30)
#: The workload name of the operator's command line (``orchestrall up`` issues it a certificate):
#: the identity of internal and admin calls it makes (``rotate-keys``, ``plans``, ``invoices``).
CLI_IDENTITY = "cli"


def spiffe_id(trust_domain: str, namespace: str, name: str) -> str:
    """Returns ``spiffe://<trust_domain>/ns/<namespace>/sa/<name>`` (Istio's form)."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{name}"


@dataclass(frozen=True)
class TlsFiles:
    """Paths of one workload's PEM files inside a TLS folder."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def of(cls, tls_dir: Path, name: str) -> TlsFiles:
        """Files of workload ``name`` in ``tls_dir``."""
        return cls(ca=tls_dir / "ca.pem", cert=tls_dir / f"{name}.pem", key=tls_dir / f"{name}-key.pem")


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def ensure_ca(tls_dir: Path, trust_domain: str) -> None:
    """Creates the CA (``ca.pem``, ``ca-key.pem``) in ``tls_dir`` unless it exists."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    if (tls_dir / "ca.pem").exists() and (tls_dir / "ca-key.pem").exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Orchestrall local CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{trust_domain} root"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(tls_dir / "ca-key.pem", key)
    (tls_dir / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def issue_workload_cert(tls_dir: Path, name: str, trust_domain: str, namespace: str) -> TlsFiles:
    """Issues (or re-issues) the certificate of workload ``name``, signed by the CA.

    The certificate is valid for server and client authentication, with SANs
    ``spiffe://<trust_domain>/ns/<namespace>/sa/<name>``, DNS ``<name>``,
    ``<name>.<namespace>.svc.cluster.local``, ``localhost`` and IP ``127.0.0.1``.

    Raises:
        FileNotFoundError: The CA does not exist yet (call :func:`ensure_ca`).
    """
    files = TlsFiles.of(tls_dir, name)
    ca_cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((tls_dir / "ca-key.pem").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(spiffe_id(trust_domain, namespace, name)),
        x509.DNSName(name),
        x509.DNSName(f"{name}.{namespace}.svc.cluster.local"),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(files.key, key)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """TLS server credentials that require a client certificate signed by the CA."""
    return grpc.ssl_server_credentials(
        [(files.key.read_bytes(), files.cert.read_bytes())],
        root_certificates=files.ca.read_bytes(),
        require_client_auth=True,
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """TLS channel credentials presenting this workload's certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=files.ca.read_bytes(),
        private_key=files.key.read_bytes(),
        certificate_chain=files.cert.read_bytes(),
    )


def peer_spiffe_id(auth_context: dict[str, list[bytes]]) -> str | None:
    """Returns the SPIFFE ID of the TLS peer of a call, or None.

    Args:
        auth_context: ``context.auth_context()`` of a server call.
    """
    pem = auth_context.get("x509_pem_cert")
    return _spiffe_id_of(pem[0]) if pem else None


@functools.lru_cache(maxsize=256)
def _spiffe_id_of(pem: bytes) -> str | None:
    """The single SPIFFE URI SAN of a PEM certificate (parsed once per certificate)."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = [u for u in sans.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")]
    return uris[0] if len(uris) == 1 else None
