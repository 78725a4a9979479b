"""`vidfeat extract --scheduler tls://…` against a TLS scheduler and TLS workers on 127.0.0.1,
configured the way dask documents it (DASK_DISTRIBUTED__COMM__TLS__* variables), with a
throwaway CA and certificate."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
from pathlib import Path

import pytest

from tests.pipeline.cluster import BIN, dask_cluster, wait_for_workers
from vidfeat.store import open_store

pytestmark = pytest.mark.slow  # end-to-end runs of real processes


def _throwaway_certs(folder: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("vidfeat test CA"))
        .issuer_name(name("vidfeat test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.mark.cluster
def test_extract_over_tls(tmp_path: Path) -> None:
    from dask.distributed import Security

    from vidfeat.synth import SynthConfig, make_dataset

    videos = tmp_path / "videos"
    make_dataset(videos, SynthConfig(classes=2, videos_per_class=2, frames=8, size=64))
    ca, cert, key = _throwaway_certs(tmp_path)
    tls_args = ["--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)]
    env = os.environ | {
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(ca),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(cert),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(key),
    }
    with dask_cluster(2, tls=tls_args) as cluster:
        assert cluster.address.startswith("tls://")
        security = Security(
            tls_ca_file=str(ca),
            tls_client_cert=str(cert),
            tls_client_key=str(key),
            require_encryption=True,
        )
        wait_for_workers(cluster.address, 2, security)
        out = subprocess.run(
            [
                *(str(BIN / "vidfeat"), "extract", str(videos / "manifest.csv")),
                *("--store", str(tmp_path / "s"), "--backbone", "tiny", "--frames", "4"),
                *("--scheduler", cluster.address, "-q"),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
        )
    assert out.returncode == 0, out.stderr
    store = open_store(tmp_path / "s", mode="r")
    assert len(store.get_featureset(store.featuresets()[0]).video_ids()) == 4
