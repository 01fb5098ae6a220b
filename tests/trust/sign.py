#!/usr/bin/env python3
"""The trust tests' independent signer: keys, certificates and the four signature formats
(cosign legacy `.sig`, cosign sigstore bundle v0.3, notation JWS, notation COSE), made with
`cryptography` and `pycose` from the public specifications, and pushed with real clients
(oras, skopeo). Nothing here shares code with the daemon; sign_selftest.py checks the output
with other verifiers (cryptography, jwcrypto, pycose).

Usage:
    sign.py WORKDIR batch < ops.json      # a JSON list of operations; prints a JSON list
    sign.py WORKDIR OP key=value ...      # one operation; values that parse as JSON are JSON

Operations (every name refers to a key or certificate kept in WORKDIR):
    {"op": "key", "name": N, "alg": p256|p384|secp256k1|ed25519|rsa2048|rsa3072}
        -> {"name", "alg", "public_pem", "private_pem"}
    {"op": "cert", "name": N, "kind": root|intermediate|leaf|selfsigned-leaf|tsa,
     "key": K, "alg"?: (when K is new), "subject": "CN=..,O=..,C=..", "issuer"?: CERT,
     "not_before"?: seconds from now (default -3600), "not_after"?: seconds (default 1 year)}
        -> {"name", "pem", "id": "sha256:<hex of DER>", "subject", "issuer"} (Go's
           pkix.Name.String() form)
    {"op": "cosign", "signers": [{"key": K, "tamper"?: T}], "reference": "HOST/REPO",
     "subject": DIGEST, "push": TARGET}
    {"op": "bundle", "key": K, "name": "HOST/REPO", "subject": DESCRIPTOR, "tamper"?, "push"}
    {"op": "notation", "key": K, "chain": [CERT, ...] (leaf first), "subject": DESCRIPTOR,
     "envelope"?: jws|cose, "scheme"?: notary.x509|notary.x509.signingAuthority,
     "tamper"?: T, "other_key"?: K, "push": TARGET}
        -> {"digest", "reference", "size", "layers": [digest], ...}
    TARGET = {"registry": "HOST:PORT", "repo": R, "via": oras|skopeo|none, "user"?, "password"?}
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import trust_artifacts  # noqa: E402
import trust_keys  # noqa: E402
import trust_push  # noqa: E402


class Signer:
    """The operations over one work directory."""

    def __init__(self, directory):
        self.store = trust_keys.Store(directory)

    def run(self, op):
        kind = op.get("op")
        handler = {
            "key": self.key,
            "cert": self.cert,
            "cosign": self.cosign,
            "bundle": self.bundle,
            "notation": self.notation,
        }.get(kind)
        if handler is None:
            raise ValueError(f"unknown op {kind!r}")
        return handler(op)

    def key(self, op):
        key = self.store.new_key(op["name"], op["alg"])
        return {"name": op["name"], "alg": op["alg"], "public_pem": trust_keys.public_pem(key),
                "private_pem": trust_keys.private_pem(key)}

    def _key(self, name, alg=None):
        if self.store.has_key(name):
            return self.store.key(name)
        if alg is None:
            raise ValueError(f"no key {name!r} and no alg to make it")
        return self.store.new_key(name, alg)

    def cert(self, op):
        key = self._key(op.get("key", op["name"]), op.get("alg", "p256"))
        issuer_cert = issuer_key = None
        if op.get("issuer"):
            issuer_cert = self.store.cert(op["issuer"])
            issuer_key = self.store.key(op.get("issuer_key", op["issuer"]))
        cert = trust_keys.make_certificate(
            op["kind"], key, op["subject"], issuer_cert, issuer_key,
            not_before_seconds=op.get("not_before", -3600),
            not_after_seconds=op.get("not_after", 365 * 86400),
        )
        self.store.save_cert(op["name"], cert)
        return {
            "name": op["name"],
            "pem": trust_keys.cert_pem(cert),
            "id": trust_artifacts.digest_of(trust_keys.cert_der(cert)),
            "subject": trust_keys.go_name_string(cert.subject),
            "issuer": trust_keys.go_name_string(cert.issuer),
            "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def _finish(self, artifact, op):
        pushed = trust_push.push(artifact, op.get("push", {"via": "none"}))
        result = artifact.summary()
        result["pushed"] = pushed
        if op.get("push", {}).get("via", "none") == "none":
            result["manifest"] = artifact.manifest.decode()
            result["blobs"] = [b.hex() for b in artifact.blobs]
        return result

    def cosign(self, op):
        signers = [(self.store.key(s["key"]), s.get("tamper")) for s in op["signers"]]
        artifact = trust_artifacts.cosign_legacy(signers, op["reference"], op["subject"])
        return self._finish(artifact, op)

    def bundle(self, op):
        artifact = trust_artifacts.cosign_bundle(
            self.store.key(op["key"]), op["name"], op["subject"], op.get("tamper")
        )
        return self._finish(artifact, op)

    def notation(self, op):
        chain = [self.store.cert(name) for name in op["chain"]]
        other = self.store.key(op["other_key"]) if op.get("other_key") else None
        if op.get("tamper") == "other-key" and other is None:
            other = trust_keys.generate_key(trust_keys.key_kind(self.store.key(op["key"])))
        artifact = trust_artifacts.notation(
            self.store.key(op["key"]), chain, op["subject"],
            envelope=op.get("envelope", "jws"), scheme=op.get("scheme", "notary.x509"),
            tamper=op.get("tamper"), other_key=other,
        )
        return self._finish(artifact, op)


def _parse_value(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    signer = Signer(argv[1])
    if argv[2] == "batch":
        ops = json.load(sys.stdin)
        print(json.dumps([signer.run(op) for op in ops]))
        return 0
    op = {"op": argv[2]}
    for item in argv[3:]:
        name, _, value = item.partition("=")
        op[name] = _parse_value(value)
    print(json.dumps(signer.run(op)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
