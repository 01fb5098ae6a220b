"""Test PKI for berth's TLS tests, made with Python's `cryptography` (independent of berth).

    certs.py DIR

writes into DIR:
  ca.crt, ca.key               a root CA
  server.crt, server.key       server certificate for 127.0.0.1 and localhost, by the CA
  server2.crt, server2.key     another server certificate (rotation), by the CA
  alice.crt, alice.key         client certificate CN=alice, by the CA
  mallory.crt, mallory.key     client certificate CN=mallory, by another CA (other-ca.crt)
  builder.crt, builder.key     client certificate CN=build-host-7 with the SANs
                               URI spiffe://example.org/workload/builder and
                               email builder@example.org, by the CA
and prints the serial numbers of server.crt and server2.crt as JSON.
"""
import datetime
import ipaddress
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)


def name(common_name):
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "berth tests"),
    ])


def write(directory, stem, certificate, key):
    with open(os.path.join(directory, stem + ".crt"), "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(directory, stem + ".key"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def ca(common_name):
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name(common_name)).issuer_name(name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=5))
        .not_valid_after(NOW + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def leaf(issuer, issuer_key, common_name, server, sans=()):
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(common_name)).issuer_name(issuer.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=5))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                       critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                       critical=False)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
        ]), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)),
                                            critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def main(directory):
    root, root_key = ca("berth test CA")
    write(directory, "ca", root, root_key)
    other, other_key = ca("another CA")
    write(directory, "other-ca", other, other_key)
    serials = {}
    for stem in ["server", "server2"]:
        certificate, key = leaf(root, root_key, "berth test server", server=True)
        write(directory, stem, certificate, key)
        serials[stem] = certificate.serial_number
    for stem, issuer, issuer_key in [("alice", root, root_key), ("mallory", other, other_key)]:
        certificate, key = leaf(issuer, issuer_key, stem, server=False)
        write(directory, stem, certificate, key)
    certificate, key = leaf(root, root_key, "build-host-7", server=False, sans=[
        x509.UniformResourceIdentifier("spiffe://example.org/workload/builder"),
        x509.RFC822Name("builder@example.org"),
    ])
    write(directory, "builder", certificate, key)
    print(json.dumps({k: str(v) for k, v in serials.items()}))


if __name__ == "__main__":
    main(sys.argv[1])
