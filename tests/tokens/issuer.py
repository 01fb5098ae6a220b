#!/usr/bin/env python3
"""A Docker/Distribution token server and JWT minter for berth's bearer tests.

It shares no code with berth: JWS signing is done here with `cryptography` only, so the
daemon's verifier is checked against an independent implementation.

Modes:
  keys DIR        generate key pairs and self-signed certificates into DIR (rsa, rsa-other,
                  p256, p384, ed25519: NAME.key, NAME.crt, NAME.pub) and print a JSON object
                  {NAME: {key, crt, pub, kid, thumbprint}}.
  mint            read a JSON list of specs from stdin, print a JSON list of tokens. A spec is
                  {"key": PRIVATE_PEM_PATH, "alg": "RS256"|"PS256"|"ES256"|"EdDSA"|"HS256"|"none",
                   "header": {...extra header fields...}, "claims": {...},
                   "hmac_secret_file": PATH (HS* only: the secret is that file's bytes)}.
  serve CONFIG    a token server on 127.0.0.1, port 0; prints "listening PORT" once bound.
                  CONFIG is a JSON file: {"service", "key", "kid", "issuer", "users":
                  {NAME: PASSWORD}, "policy": {NAME or "": [{"type", "glob", "actions"}]}}.
                  GET /token?service=S&scope=T:NAME:A,B[&scope=...] with optional Basic auth
                  answers {"token", "access_token", "expires_in", "issued_at"}; each scope is
                  granted the requested actions the caller's policy allows ("" is anonymous).
  selfcheck       sign and verify once per algorithm with `cryptography` (no berth involved).
"""

import base64
import datetime
import fnmatch
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.x509.oid import NameOID

TOKEN_LIFETIME_SECONDS = 300
HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def spki_der(public_key):
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def libtrust_kid(public_key):
    """base32 of the first 240 bits of SHA-256(SPKI DER), 12 groups of 4 (libtrust)."""
    digits = base64.b32encode(hashlib.sha256(spki_der(public_key)).digest()[:30]).decode()
    digits = digits.rstrip("=")
    return ":".join(digits[i : i + 4] for i in range(0, len(digits), 4))


def int_bytes(value, length=None):
    length = length or (value.bit_length() + 7) // 8
    return value.to_bytes(length, "big")


def thumbprint(public_key):
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        jwk = {"e": b64url(int_bytes(numbers.e)), "kty": "RSA", "n": b64url(int_bytes(numbers.n))}
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        size = (public_key.curve.key_size + 7) // 8
        numbers = public_key.public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[public_key.curve.name]
        jwk = {
            "crv": crv,
            "kty": "EC",
            "x": b64url(int_bytes(numbers.x, size)),
            "y": b64url(int_bytes(numbers.y, size)),
        }
    else:
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()
    return b64url(hashlib.sha256(canonical).digest())


def public_jwk(public_key):
    """The public key as a JWK (for the embedded-`jwk` attack tokens)."""
    numbers = public_key.public_numbers()
    if isinstance(public_key, rsa.RSAPublicKey):
        return {"kty": "RSA", "n": b64url(int_bytes(numbers.n)), "e": b64url(int_bytes(numbers.e))}
    size = (public_key.curve.key_size + 7) // 8
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(int_bytes(numbers.x, size)),
        "y": b64url(int_bytes(numbers.y, size)),
    }


def load_private(path):
    with open(path, "rb") as handle:
        return serialization.load_pem_private_key(handle.read(), password=None)


def sign_jws(alg, private_key, header, claims, secret=None):
    header = dict(header)
    header["alg"] = alg
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    ).encode()
    if alg == "none":
        signature = b""
    elif alg.startswith("HS"):
        signature = hmac.new(secret, signing_input, getattr(hashlib, "sha" + alg[2:])).digest()
    elif alg.startswith("RS"):
        signature = private_key.sign(signing_input, padding.PKCS1v15(), HASHES[alg[2:]]())
    elif alg.startswith("PS"):
        digest = HASHES[alg[2:]]()
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        signature = private_key.sign(signing_input, pss, digest)
    elif alg.startswith("ES"):
        der = private_key.sign(signing_input, ec.ECDSA(HASHES[alg[2:]]()))
        r, s = utils.decode_dss_signature(der)
        size = (private_key.curve.key_size + 7) // 8
        signature = int_bytes(r, size) + int_bytes(s, size)
    elif alg == "EdDSA":
        signature = private_key.sign(signing_input)
    else:
        raise ValueError(f"unknown alg {alg}")
    return signing_input.decode() + "." + b64url(signature)


def self_signed(private_key, name):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
    )
    algorithm = None if isinstance(private_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(private_key, algorithm)


def generate_keys(directory):
    os.makedirs(directory, exist_ok=True)
    made = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa-other": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }
    out = {}
    for name, private_key in made.items():
        paths = {kind: os.path.join(directory, f"{name}.{kind}") for kind in ("key", "crt", "pub")}
        with open(paths["key"], "wb") as handle:
            handle.write(
                private_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        with open(paths["crt"], "wb") as handle:
            handle.write(self_signed(private_key, f"tokens {name}").public_bytes(serialization.Encoding.PEM))
        public_key = private_key.public_key()
        with open(paths["pub"], "wb") as handle:
            handle.write(
                public_key.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
        out[name] = dict(paths, kid=libtrust_kid(public_key), thumbprint=thumbprint(public_key))
        if not isinstance(private_key, ed25519.Ed25519PrivateKey):
            out[name]["jwk"] = public_jwk(public_key)
    return out


def mint(spec):
    private_key = load_private(spec["key"]) if spec.get("key") else None
    secret = None
    if spec.get("hmac_secret_file"):
        with open(spec["hmac_secret_file"], "rb") as handle:
            secret = handle.read()
    header = {"typ": "JWT"}
    header.update(spec.get("header", {}))
    return sign_jws(spec["alg"], private_key, header, spec["claims"], secret)


class TokenHandler(BaseHTTPRequestHandler):
    config = None
    private_key = None

    def log_message(self, *args):
        pass

    def answer(self, status, body, extra=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def caller(self):
        """The user name, "" for anonymous, or None for wrong credentials."""
        authorization = self.headers.get("Authorization")
        if not authorization:
            return ""
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return None
        expected = self.config["users"].get(user)
        if expected is None or not hmac.compare_digest(expected, password):
            return None
        return user

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            return self.answer(404, {"error": "not found"})
        query = urllib.parse.parse_qs(url.query)
        user = self.caller()
        if user is None:
            return self.answer(401, {"error": "bad credentials"}, {"WWW-Authenticate": 'Basic realm="tokens"'})
        service = query.get("service", [""])[0]
        if service != self.config["service"]:
            return self.answer(400, {"error": f"unknown service {service!r}"})
        policy = self.config["policy"].get(user, [])
        access = []
        for scope in " ".join(query.get("scope", [])).split():
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
            allowed = set()
            for entry in policy:
                if entry["type"] == kind and fnmatch.fnmatchcase(name, entry["glob"]):
                    allowed.update(entry["actions"])
            granted = [action for action in actions if action in allowed or "*" in allowed]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": self.config["issuer"],
            "sub": user,
            "aud": service,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "nbf": now - 1,
            "iat": now,
            "jti": b64url(os.urandom(12)),
            "access": access,
        }
        token = sign_jws("RS256", self.private_key, {"typ": "JWT", "kid": self.config["kid"]}, claims)
        issued = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.answer(
            200,
            {"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME_SECONDS, "issued_at": issued},
        )


def serve(config_path):
    with open(config_path) as handle:
        TokenHandler.config = json.load(handle)
    TokenHandler.private_key = load_private(TokenHandler.config["key"])
    server = HTTPServer(("127.0.0.1", 0), TokenHandler)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


def selfcheck():
    """Each algorithm's signature verifies with `cryptography`: the minter is sound."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        keys = generate_keys(directory)
        for name, alg in [("rsa", "RS256"), ("rsa", "PS384"), ("p256", "ES256"), ("p384", "ES384"), ("ed25519", "EdDSA")]:
            private_key = load_private(keys[name]["key"])
            token = sign_jws(alg, private_key, {}, {"sub": "x"})
            signing_input, _, signature = token.rpartition(".")
            signature = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
            public_key = private_key.public_key()
            data = signing_input.encode()
            if alg.startswith("RS"):
                public_key.verify(signature, data, padding.PKCS1v15(), HASHES[alg[2:]]())
            elif alg.startswith("PS"):
                digest = HASHES[alg[2:]]()
                public_key.verify(signature, data, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
            elif alg.startswith("ES"):
                half = len(signature) // 2
                r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
                public_key.verify(utils.encode_dss_signature(r, s), data, ec.ECDSA(HASHES[alg[2:]]()))
            else:
                public_key.verify(signature, data)
    print("ok")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "keys":
        print(json.dumps(generate_keys(sys.argv[2])))
    elif mode == "mint":
        print(json.dumps([mint(spec) for spec in json.load(sys.stdin)]))
    elif mode == "serve":
        serve(sys.argv[2])
    elif mode == "selfcheck":
        selfcheck()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
