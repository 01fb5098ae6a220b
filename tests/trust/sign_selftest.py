#!/usr/bin/env python3
"""Checks the signer against verifiers that are not the signer: `cryptography` for cosign's
raw signatures, DSSE and certificate chains, `jwcrypto` for the notation JWS envelope, `pycose`
(message parsing and signature check) for the notation COSE envelope. Every good artifact must
verify and every tampered one must not, before the daemon is asked to tell them apart.

Usage: sign_selftest.py   (prints "ok: N checks" or raises)
"""

import base64
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cbor2  # noqa: E402
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding  # noqa: E402
from jwcrypto import jwk, jws  # noqa: E402
from jwcrypto.common import JWSEHeaderParameter  # noqa: E402
from pycose.keys import CoseKey  # noqa: E402
from pycose.messages import Sign1Message  # noqa: E402

import sign  # noqa: E402
import trust_artifacts as ta  # noqa: E402
import trust_keys as tk  # noqa: E402

CHECKS = 0
SUBJECT = {"mediaType": ta.OCI_MANIFEST, "digest": ta.digest_of(b"image"), "size": 5}
NOTARY_CRIT = ["io.cncf.notary.signingScheme", "io.cncf.notary.signingTime",
               "io.cncf.notary.authenticSigningTime"]

# jwcrypto refuses a `crit` name it does not know: these are the ones a notary verifier knows.
NOTARY_HEADERS = {name: JWSEHeaderParameter(name, True, True, None) for name in NOTARY_CRIT}


def check(condition, what):
    global CHECKS
    CHECKS += 1
    if not condition:
        raise AssertionError(what)


def cosign_verifies(public, payload, signature):
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, payload)
        else:
            public.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False


def legacy_verdicts(result, public):
    manifest = json.loads(result["manifest"])
    blobs = [bytes.fromhex(b) for b in result["blobs"]]
    verdicts = []
    for layer, payload in zip(manifest["layers"], blobs[1:]):
        check(ta.digest_of(payload) == layer["digest"], "layer digest")
        encoded = layer.get("annotations", {}).get(ta.COSIGN_ANNOTATION)
        try:
            signature = base64.b64decode(encoded, validate=True) if encoded else None
        except ValueError:
            signature = None
        ok = signature is not None and cosign_verifies(public, payload, signature)
        named = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
        verdicts.append(ok and named == SUBJECT["digest"])
    return verdicts


def check_cosign(signer):
    for alg in ("p256", "ed25519", "rsa2048"):
        public = signer.run({"op": "key", "name": f"cosign-{alg}", "alg": alg})
        pub = tk.load_private(public["private_pem"]).public_key()
        for tamper, expected in [(None, True), ("tampered", False), ("other-digest", False),
                                 ("bad-base64", False), ("no-signature", False)]:
            result = signer.run({"op": "cosign", "signers": [{"key": f"cosign-{alg}", "tamper": tamper}],
                                 "reference": "127.0.0.1/repo", "subject": SUBJECT["digest"]})
            check(result["reference"] == "sha256-" + SUBJECT["digest"][7:] + ".sig", "tag")
            check(legacy_verdicts(result, pub) == [expected], f"cosign {alg} {tamper}")
    signer.run({"op": "key", "name": "cosign-other", "alg": "p256"})
    result = signer.run({"op": "cosign", "signers": [{"key": "cosign-p256"}, {"key": "cosign-other"}],
                         "reference": "127.0.0.1/repo", "subject": SUBJECT["digest"]})
    pub = signer.store.key("cosign-p256").public_key()
    check(legacy_verdicts(result, pub) == [True, False], "two layers, one per key")
    config = json.loads(bytes.fromhex(result["blobs"][0]))
    check(len(config["rootfs"]["diff_ids"]) == 2, "diff_ids per layer")


def check_bundle(signer):
    pub = signer.store.key("cosign-p256").public_key()
    for tamper, expected in [(None, True), ("tampered", False), ("other-digest", False)]:
        result = signer.run({"op": "bundle", "key": "cosign-p256", "name": "127.0.0.1/repo",
                             "subject": SUBJECT, "tamper": tamper})
        manifest = json.loads(result["manifest"])
        check(manifest["artifactType"] == ta.BUNDLE and manifest["subject"] == SUBJECT, "bundle manifest")
        bundle = json.loads(bytes.fromhex(result["blobs"][1]))
        envelope = bundle["dsseEnvelope"]
        statement = base64.b64decode(envelope["payload"])
        signature = base64.b64decode(envelope["signatures"][0]["sig"])
        ok = cosign_verifies(pub, ta.pae(envelope["payloadType"], statement), signature)
        named = json.loads(statement)["subject"][0]["digest"]["sha256"]
        check((ok and "sha256:" + named == SUBJECT["digest"]) == expected, f"bundle {tamper}")
    check(ta.pae("a", b"bc") == b"DSSEv1 1 a 2 bc", "PAE")


def make_chain(signer, alg, prefix, leaf_not_after=86400):
    signer.run({"op": "cert", "name": f"{prefix}-root", "kind": "root", "alg": alg,
                "subject": f"CN={prefix} root,O=Example,C=US"})
    signer.run({"op": "cert", "name": f"{prefix}-ca", "kind": "intermediate", "alg": alg,
                "issuer": f"{prefix}-root", "subject": f"CN={prefix} intermediate,O=Example,C=US"})
    leaf = signer.run({"op": "cert", "name": f"{prefix}-leaf", "kind": "leaf", "alg": alg,
                       "issuer": f"{prefix}-ca", "subject": f"CN={prefix} signer,O=Example,C=US",
                       "not_after": leaf_not_after})
    root, inter, cert = (signer.store.cert(f"{prefix}-{n}") for n in ("root", "ca", "leaf"))
    cert.verify_directly_issued_by(inter)
    inter.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    check(leaf["subject"] == f"CN={prefix} signer,O=Example,C=US", f"Go subject {leaf['subject']}")
    return [f"{prefix}-leaf", f"{prefix}-ca", f"{prefix}-root"]


def jws_verdict(envelope_bytes, leaf_pem):
    envelope = json.loads(envelope_bytes)
    token = jws.JWS(header_registry=NOTARY_HEADERS)
    token.deserialize(json.dumps(envelope))
    header = json.loads(base64.urlsafe_b64decode(envelope["protected"] + "=="))
    if any(c not in NOTARY_CRIT for c in header["crit"]):
        return False, header
    key = jwk.JWK.from_pem(leaf_pem.encode())
    try:
        token.verify(key, alg=header["alg"])
    except jws.InvalidJWSSignature:
        return False, header
    payload = json.loads(token.payload)
    return payload["targetArtifact"] == SUBJECT, header


def cose_verdict(envelope_bytes, leaf):
    tagged = cbor2.loads(envelope_bytes)
    check(tagged.tag == 18, "COSE_Sign1 tag")
    # cbor2 >= 6 decodes maps as frozendict, which pycose does not take.
    fields = list(tagged.value)
    fields[1] = dict(fields[1])
    message = Sign1Message.from_cose_obj(fields, True)
    chain = message.uhdr.get(ta.X5chain) or tagged.value[1][33]
    check(tk.cert_der(leaf) == chain[0], "x5chain leaf first")
    protected = cbor2.loads(tagged.value[0])
    if any(c not in NOTARY_CRIT for c in protected[2]):
        return False, protected
    message.key = CoseKey._from_cryptography_key(leaf.public_key())
    ok = message.verify_signature()
    return ok and json.loads(message.payload)["targetArtifact"] == SUBJECT, protected


def check_notation(signer):
    for alg, jws_alg in (("p256", "ES256"), ("p384", "ES384"), ("rsa2048", "PS256")):
        chain = make_chain(signer, alg, f"n{alg}")
        leaf = signer.store.cert(chain[0])
        for envelope in ("jws", "cose"):
            for tamper, expected in [(None, True), ("tampered", False), ("other-digest", False),
                                     ("wrong-size", False), ("other-key", False), ("unknown-crit", False)]:
                for scheme in ("notary.x509", "notary.x509.signingAuthority"):
                    if scheme != "notary.x509" and tamper is not None:
                        continue
                    result = signer.run({"op": "notation", "key": chain[0], "chain": chain, "subject": SUBJECT,
                                         "envelope": envelope, "scheme": scheme, "tamper": tamper})
                    manifest = json.loads(result["manifest"])
                    check(manifest["artifactType"] == ta.NOTATION_SIGNATURE, "artifactType")
                    check(manifest["config"]["mediaType"] == ta.EMPTY, "empty config")
                    thumbs = json.loads(manifest["annotations"]["io.cncf.notary.x509chain.thumbprint#S256"])
                    check(len(thumbs) == 3, "one thumbprint per certificate")
                    body = bytes.fromhex(result["blobs"][1])
                    if envelope == "jws":
                        check(manifest["layers"][0]["mediaType"] == ta.JWS, "jws layer")
                        ok, header = jws_verdict(body, tk.cert_pem(leaf))
                        check(header["alg"] == jws_alg and header["cty"] == ta.NOTARY_PAYLOAD, "jws header")
                        check(header["io.cncf.notary.signingScheme"] == scheme, "scheme")
                        x5c = json.loads(body)["header"]["x5c"]
                        check(len(x5c) == 3 and base64.b64decode(x5c[0]) == tk.cert_der(leaf), "x5c")
                    else:
                        check(manifest["layers"][0]["mediaType"] == ta.COSE, "cose layer")
                        ok, header = cose_verdict(body, leaf)
                        check(header[3] == ta.NOTARY_PAYLOAD, "cose cty")
                        check(header["io.cncf.notary.signingScheme"] == scheme, "scheme")
                    check(ok == expected, f"notation {alg} {envelope} {scheme} {tamper}: {ok}")


def check_certs(signer):
    tsa = signer.run({"op": "cert", "name": "tsa", "kind": "tsa", "alg": "p256", "issuer": "np256-root",
                      "issuer_key": "np256-root", "subject": "CN=TSA,O=Example,C=US"})
    check("BEGIN CERTIFICATE" in tsa["pem"], "tsa pem")
    selfsigned = signer.run({"op": "cert", "name": "test-leaf", "kind": "selfsigned-leaf", "alg": "rsa2048",
                             "subject": "CN=test.example,O=Notary,L=Seattle,ST=WA,C=US"})
    check(selfsigned["subject"] == "CN=test.example,O=Notary,L=Seattle,ST=WA,C=US", selfsigned["subject"])
    check(selfsigned["issuer"] == selfsigned["subject"], "self-issued")
    soon = signer.run({"op": "cert", "name": "soon", "kind": "leaf", "key": "soon", "alg": "p256",
                       "issuer": "np256-ca", "subject": "CN=soon,O=Example,C=US", "not_before": 60})
    check(soon["not_before"] > tsa["not_before"], "not yet valid")
    for alg in ("p384", "secp256k1", "ed25519", "rsa3072"):
        key = signer.run({"op": "key", "name": f"k-{alg}", "alg": alg})
        check(key["public_pem"].startswith("-----BEGIN PUBLIC KEY-----"), f"{alg} pem")


def main():
    with tempfile.TemporaryDirectory(prefix="trust-selftest-") as work:
        signer = sign.Signer(work)
        check_cosign(signer)
        check_bundle(signer)
        check_notation(signer)
        check_certs(signer)
    print(f"ok: {CHECKS} checks")


if __name__ == "__main__":
    main()
