"""Signature artifacts as the real tools lay them out in a registry: cosign's legacy
`sha256-<hex>.sig` image (simple signing payload layers), cosign's sigstore bundle v0.3 referrer
(a DSSE envelope over an in-toto statement v1), and notation's referrer (a JWS or COSE_Sign1
envelope over a Notary Project payload).

Each builder returns an `Artifact`: the manifest bytes, the blobs it names, the reference to
push it under (a tag for cosign's legacy image, its own digest for referrers) and the facts a
test asserts on. Variants that must NOT verify are made here too: `tamper` names what goes
wrong after or around an otherwise correct signature.

Specifications followed: cosign's SIGNATURE_SPEC.md (simple signing), sigstore's bundle
protobuf-specs v0.3 and DSSE's PAE, in-toto Statement v1, the Notary Project's signature
specification (signature-specification.md, signature-envelope-jws.md, signature-envelope-
cose.md).
"""

import base64
import datetime
import hashlib
import json

import cbor2
from pycose.headers import Algorithm, ContentType, Critical, X5chain
from pycose.keys import CoseKey
from pycose.messages import Sign1Message

import trust_keys

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
COSIGN_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_ANNOTATION = "dev.cosignproject.cosign/signature"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO = "application/vnd.in-toto+json"
COSIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
NOTATION_SIGNATURE = "application/vnd.cncf.notary.signature"
JWS = "application/jose+json"
COSE = "application/cose"
NOTARY_PAYLOAD = "application/vnd.cncf.notary.payload.v1+json"
SIGNING_AGENT = "berth-tests-signer/1.0"

COSIGN_TAMPERS = ("tampered", "other-digest", "bad-base64", "no-signature")
NOTATION_TAMPERS = ("tampered", "other-digest", "wrong-size", "wrong-media-type", "other-key",
                    "unknown-crit")


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(value):
    """JSON as Go's encoding/json writes it: no spaces, keys in the order given."""
    return json.dumps(value, separators=(",", ":")).encode()


def descriptor(media_type, data, annotations=None):
    d = {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}
    if annotations:
        d["annotations"] = annotations
    return d


class Artifact:
    """A manifest ready to push: `reference` is a tag or, for a referrer, its digest."""

    def __init__(self, manifest, blobs, reference=None, facts=None):
        self.manifest = manifest
        self.digest = digest_of(manifest)
        self.blobs = blobs
        self.reference = reference or self.digest
        self.facts = facts or {}

    def summary(self):
        return {"digest": self.digest, "reference": self.reference, "size": len(self.manifest),
                "layers": [digest_of(b) for b in self.blobs[1:]], **self.facts}


def _created():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- cosign, legacy .sig image


def simple_signing_payload(reference, digest):
    return canonical({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    })


def cosign_layer(key, reference, digest, tamper=None, other_digest=None):
    """(payload, layer descriptor) of one cosign signature of `digest`."""
    if tamper == "other-digest":
        digest = other_digest or digest_of(b"another image")
    payload = simple_signing_payload(reference, digest)
    signature = base64.b64encode(trust_keys.sign_cosign(key, payload)).decode()
    if tamper == "tampered":
        # Signed, then changed: one more byte of identity.
        payload = simple_signing_payload(reference + "x", digest)
    elif tamper == "bad-base64":
        signature = "%%not base64%%"
    elif tamper not in (None, "other-digest", "no-signature"):
        raise ValueError(f"unknown cosign tamper {tamper!r} (one of {COSIGN_TAMPERS})")
    annotations = {} if tamper == "no-signature" else {COSIGN_ANNOTATION: signature}
    return payload, descriptor(COSIGN_LAYER, payload, annotations)


def cosign_legacy(signers, reference, subject_digest):
    """cosign's `sha256-<hex>.sig` image: one simple-signing layer per entry of `signers`
    (each `(key, tamper)`), the config cosign writes (diff_ids = the payload digests)."""
    payloads, layers = [], []
    for key, tamper in signers:
        payload, layer = cosign_layer(key, reference, subject_digest, tamper)
        payloads.append(payload)
        layers.append(layer)
    config = canonical({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"} for _ in payloads],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [digest_of(p) for p in payloads]},
        "config": {},
    })
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers,
    })
    tag = "sha256-" + subject_digest.split(":", 1)[1] + ".sig"
    return Artifact(manifest, [config] + payloads, tag, {"tag": tag})


# ---------------------------------------------------------------- cosign, sigstore bundle v0.3


def pae(payload_type, body):
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def in_toto_statement(name, digest):
    return canonical({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": digest.split(":", 1)[1]}}],
        "predicateType": COSIGN_PREDICATE,
        "predicate": {},
    })


def public_key_hint(key):
    from cryptography.hazmat.primitives import serialization

    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def cosign_bundle(key, name, subject, tamper=None):
    """A sigstore bundle v0.3 (DSSE envelope, public-key verification material, no tlog) as a
    referrer of `subject` (a descriptor dict)."""
    digest = subject["digest"]
    if tamper == "other-digest":
        digest = digest_of(b"another image")
    statement = in_toto_statement(name, digest)
    signature = trust_keys.sign_cosign(key, pae(IN_TOTO, statement))
    if tamper == "tampered":
        statement = in_toto_statement(name + "x", digest)
    elif tamper not in (None, "other-digest"):
        raise ValueError(f"unknown bundle tamper {tamper!r}")
    bundle = canonical({
        "mediaType": BUNDLE,
        "verificationMaterial": {"publicKey": {"hint": public_key_hint(key)}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(statement).decode(),
            "payloadType": IN_TOTO,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    })
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE,
        "config": descriptor(EMPTY, EMPTY_BLOB),
        "layers": [descriptor(BUNDLE, bundle)],
        "subject": subject,
        "annotations": {
            "dev.sigstore.bundle.content": "dsse-envelope",
            "dev.sigstore.bundle.predicateType": COSIGN_PREDICATE,
            "org.opencontainers.image.created": _created(),
        },
    })
    return Artifact(manifest, [EMPTY_BLOB, bundle])


# ---------------------------------------------------------------- notation


def notary_payload(subject, tamper=None):
    target = dict(subject)
    if tamper == "other-digest":
        target["digest"] = digest_of(b"another image")
    elif tamper == "wrong-size":
        target["size"] = subject["size"] + 1
    elif tamper == "wrong-media-type":
        target["mediaType"] = "application/vnd.oci.image.index.v1+json"
    return canonical({"targetArtifact": target})


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signing_time():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _scheme_headers(scheme, when, as_cbor):
    """The protected headers of the signing scheme: notary.x509 carries signingTime,
    notary.x509.signingAuthority carries authenticSigningTime, which is then critical too."""
    stamp = cbor2.CBORTag(1, int(when.timestamp())) if as_cbor else when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if scheme == "notary.x509":
        return {"io.cncf.notary.signingTime": stamp}, []
    if scheme == "notary.x509.signingAuthority":
        return {"io.cncf.notary.authenticSigningTime": stamp}, ["io.cncf.notary.authenticSigningTime"]
    raise ValueError(f"unknown signing scheme {scheme!r}")


def jws_envelope(signing_key, chain, payload, scheme, extra_crit=False, tamper_payload=None):
    """Notary Project JWS envelope (flattened JSON serialization): protected alg, cty, crit,
    signingScheme and the scheme's time; unprotected x5c (leaf first, standard base64 DER) and
    signingAgent."""
    alg, _, _ = trust_keys.NOTATION_ALG[trust_keys.key_kind(signing_key)]
    times, crit_extra = _scheme_headers(scheme, _signing_time(), as_cbor=False)
    crit = ["io.cncf.notary.signingScheme"] + crit_extra
    protected = {"alg": alg, "cty": NOTARY_PAYLOAD, "io.cncf.notary.signingScheme": scheme, **times}
    if extra_crit:
        protected["io.cncf.example.unknown"] = "must be understood"
        crit.append("io.cncf.example.unknown")
    protected["crit"] = crit
    protected_b64 = _b64url(canonical(protected))
    payload_b64 = _b64url(payload)
    _, _, signature = trust_keys.sign_notation(signing_key, f"{protected_b64}.{payload_b64}".encode())
    if tamper_payload is not None:
        payload_b64 = _b64url(tamper_payload)
    return canonical({
        "payload": payload_b64,
        "protected": protected_b64,
        "header": {
            "x5c": [base64.b64encode(trust_keys.cert_der(c)).decode() for c in chain],
            "io.cncf.notary.signingAgent": SIGNING_AGENT,
        },
        "signature": _b64url(signature),
    })


def cose_envelope(signing_key, chain, payload, scheme, extra_crit=False, tamper_payload=None):
    """Notary Project COSE_Sign1 envelope (CBOR tag 18), made and signed by pycose: protected
    alg (1), crit (2), content type (3), signingScheme and the scheme's time (CBOR tag 1,
    seconds); unprotected x5chain (33, leaf first) and signingAgent."""
    _, cose_alg, _ = trust_keys.NOTATION_ALG[trust_keys.key_kind(signing_key)]
    times, crit_extra = _scheme_headers(scheme, _signing_time(), as_cbor=True)
    crit = ["io.cncf.notary.signingScheme"] + crit_extra
    protected = {Algorithm: cose_alg, Critical: crit, ContentType: NOTARY_PAYLOAD,
                 "io.cncf.notary.signingScheme": scheme, **times}
    if extra_crit:
        protected["io.cncf.example.unknown"] = "must be understood"
        crit.append("io.cncf.example.unknown")
    unprotected = {X5chain: [trust_keys.cert_der(c) for c in chain],
                   "io.cncf.notary.signingAgent": SIGNING_AGENT}
    message = Sign1Message(phdr=protected, uhdr=unprotected, payload=payload)
    message.key = CoseKey._from_cryptography_key(signing_key)
    encoded = message.encode(tag=True)
    if tamper_payload is None:
        return encoded
    # Signed, then the payload swapped: the same four fields with another third.
    tagged = cbor2.loads(encoded)
    fields = list(tagged.value)
    fields[2] = tamper_payload
    return cbor2.dumps(cbor2.CBORTag(18, fields))


def thumbprints(chain):
    return json.dumps([hashlib.sha256(trust_keys.cert_der(c)).hexdigest() for c in chain],
                      separators=(",", ":"))


def notation(signing_key, chain, subject, envelope="jws", scheme="notary.x509", tamper=None,
             other_key=None):
    """notation's signature referrer of `subject` (a descriptor dict): artifactType
    application/vnd.cncf.notary.signature, the empty config, one envelope layer. `chain` is
    leaf first. `tamper` (NOTATION_TAMPERS) breaks one thing."""
    if tamper not in (None,) + NOTATION_TAMPERS:
        raise ValueError(f"unknown notation tamper {tamper!r} (one of {NOTATION_TAMPERS})")
    payload = notary_payload(subject, tamper)
    key = other_key if tamper == "other-key" else signing_key
    tampered = notary_payload(dict(subject, annotations={"x": "y"})) if tamper == "tampered" else None
    make = {"jws": jws_envelope, "cose": cose_envelope}[envelope]
    body = make(key, chain, payload, scheme, extra_crit=tamper == "unknown-crit", tamper_payload=tampered)
    layer_type = {"jws": JWS, "cose": COSE}[envelope]
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": NOTATION_SIGNATURE,
        "config": descriptor(EMPTY, EMPTY_BLOB),
        "layers": [descriptor(layer_type, body)],
        "subject": subject,
        "annotations": {
            "io.cncf.notary.x509chain.thumbprint#S256": thumbprints(chain),
            "org.opencontainers.image.created": _created(),
        },
    })
    return Artifact(manifest, [EMPTY_BLOB, body], facts={"envelope": envelope, "scheme": scheme})
