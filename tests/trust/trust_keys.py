"""Keys and X.509 certificates for the trust tests, made with `cryptography` only.

Owns: key generation (ECDSA P-256/P-384/secp256k1, Ed25519, RSA-2048/3072), PEM export,
raw signing the way each signature format wants it (DER or fixed-width ECDSA, PKCS#1 v1.5 or
PSS RSA), certificates (root CA, intermediate CA, code-signing leaf, self-signed code-signing
leaf as `notation cert generate-test` makes, TSA) with a chosen validity window, and subjects
rendered the way Go's `pkix.Name.String()` renders them (what the daemon reports as Author).

Rules: nothing here touches the network or the registry; every key and certificate is stored
in the caller's work directory under its name so that later calls can reuse it.
"""

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ALGORITHMS = ("p256", "p384", "secp256k1", "ed25519", "rsa2048", "rsa3072")

# Go's pkix.Name.ToRDNSequence order; String() prints it reversed.
_GO_ORDER = [
    ("C", NameOID.COUNTRY_NAME),
    ("ST", NameOID.STATE_OR_PROVINCE_NAME),
    ("L", NameOID.LOCALITY_NAME),
    ("O", NameOID.ORGANIZATION_NAME),
    ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ("CN", NameOID.COMMON_NAME),
]


def generate_key(alg):
    if alg == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "secp256k1":
        return ec.generate_private_key(ec.SECP256K1())
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"unknown key algorithm {alg!r} (one of {ALGORITHMS})")


def public_pem(key):
    """SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), as `cosign public-key` writes."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def private_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def load_private(pem):
    return serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, None)


def key_kind(key):
    """The algorithm name of a private or public key (one of ALGORITHMS)."""
    public = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(public, ec.EllipticCurvePublicKey):
        return {"secp256r1": "p256", "secp384r1": "p384", "secp256k1": "secp256k1"}[public.curve.name]
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public, rsa.RSAPublicKey):
        return f"rsa{public.key_size}"
    raise ValueError(f"unsupported key {public!r}")


def sign_cosign(key, data):
    """A signature as cosign makes it: ECDSA ASN.1 DER over SHA-256 (cosign hashes with SHA-256
    whatever the curve), Ed25519 over the message itself, RSA PKCS#1 v1.5 with SHA-256."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise ValueError(f"cosign cannot sign with {key!r}")


# The Notary Project's signature algorithms by key (signature specification, "Algorithm
# Selection"): RSASSA-PSS with the hash growing with the modulus, ECDSA with the curve's hash.
NOTATION_ALG = {
    "rsa2048": ("PS256", -37, hashes.SHA256),
    "rsa3072": ("PS384", -38, hashes.SHA384),
    "p256": ("ES256", -7, hashes.SHA256),
    "p384": ("ES384", -35, hashes.SHA384),
}


def sign_notation(key, data):
    """JWS/COSE signature bytes: RSASSA-PSS (salt length = hash length) or ECDSA as the fixed-
    width big-endian r || s (RFC 7518 3.4, RFC 9053 2.1). Returns (jws alg, cose alg, sig)."""
    kind = key_kind(key)
    if kind not in NOTATION_ALG:
        raise ValueError(f"notation does not sign with {kind}")
    jws_alg, cose_alg, hash_cls = NOTATION_ALG[kind]
    if isinstance(key, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=hash_cls.digest_size)
        return jws_alg, cose_alg, key.sign(data, pss, hash_cls())
    der = key.sign(data, ec.ECDSA(hash_cls()))
    r, s = decode_dss_signature(der)
    width = (key.curve.key_size + 7) // 8
    return jws_alg, cose_alg, r.to_bytes(width, "big") + s.to_bytes(width, "big")


def parse_subject(text):
    """`CN=signer,O=Example,C=US` (any order, no escapes) -> x509.Name in Go's encoding order."""
    parts = {}
    for item in text.split(","):
        attr, _, value = item.strip().partition("=")
        parts[attr.strip().upper()] = value.strip()
    known = dict(_GO_ORDER)
    unknown = set(parts) - set(known)
    if unknown:
        raise ValueError(f"unsupported subject attributes {sorted(unknown)} in {text!r}")
    return x509.Name(
        [x509.NameAttribute(oid, parts[short]) for short, oid in _GO_ORDER if short in parts]
    )


def go_name_string(name):
    """Go's `pkix.Name.String()` for a name made of the attributes of _GO_ORDER: RFC 2253
    style, the RDN sequence in reverse."""
    by_oid = {oid: short for short, oid in _GO_ORDER}
    values = {}
    for attribute in name:
        values.setdefault(attribute.oid, []).append(attribute.value)
    rdns = []
    for short, oid in _GO_ORDER:
        for value in values.get(oid, []):
            rdns.append(f"{by_oid[oid]}={value}")
    return ",".join(reversed(rdns))


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def make_certificate(kind, key, subject, issuer_cert=None, issuer_key=None,
                     not_before_seconds=-3600, not_after_seconds=365 * 86400):
    """A certificate of `kind` for `key`:
    - "root": self-signed CA (basicConstraints CA:true critical, keyCertSign + cRLSign);
    - "intermediate": CA with pathlen 0, issued by issuer_cert/issuer_key;
    - "leaf": code signing (CA:false critical, digitalSignature critical, EKU codeSigning);
    - "selfsigned-leaf": the leaf's extensions, self-issued (`notation cert generate-test`);
    - "tsa": time stamping (digitalSignature critical, EKU timeStamping critical).
    The validity runs from now + not_before_seconds to now + not_after_seconds."""
    now = _now()
    name = parse_subject(subject)
    self_signed = kind in ("root", "selfsigned-leaf") or issuer_cert is None
    if not self_signed and issuer_key is None:
        raise ValueError(f"a {kind} certificate needs its issuer's key")
    signer = key if self_signed else issuer_key
    issuer_name = name if self_signed else issuer_cert.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(seconds=not_before_seconds))
        .not_valid_after(now + datetime.timedelta(seconds=not_after_seconds))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if not self_signed:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    ca = kind in ("root", "intermediate")
    builder = builder.add_extension(
        x509.BasicConstraints(ca=ca, path_length=0 if kind == "intermediate" else None), critical=True
    )
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=not ca, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False,
        ),
        critical=True,
    )
    if kind in ("leaf", "selfsigned-leaf"):
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    elif kind == "tsa":
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    elif not ca:
        raise ValueError(f"unknown certificate kind {kind!r}")
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else _cert_hash(signer)
    return builder.sign(signer, algorithm)


def _cert_hash(key):
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def cert_der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def load_cert(pem):
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


class Store:
    """Keys and certificates by name in `<dir>/keys/NAME.key` and `<dir>/certs/NAME.pem`."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(os.path.join(directory, "keys"), exist_ok=True)
        os.makedirs(os.path.join(directory, "certs"), exist_ok=True)

    def _key_path(self, name):
        return os.path.join(self.dir, "keys", f"{name}.key")

    def _cert_path(self, name):
        return os.path.join(self.dir, "certs", f"{name}.pem")

    def new_key(self, name, alg):
        key = generate_key(alg)
        with open(self._key_path(name), "w") as f:
            f.write(private_pem(key))
        return key

    def key(self, name):
        with open(self._key_path(name)) as f:
            return load_private(f.read())

    def has_key(self, name):
        return os.path.exists(self._key_path(name))

    def save_cert(self, name, cert):
        with open(self._cert_path(name), "w") as f:
            f.write(cert_pem(cert))

    def cert(self, name):
        with open(self._cert_path(name)) as f:
            return load_cert(f.read())
