"""Putting signature artifacts into a registry the way users do: referrers with oras (the
Python `oras` package's client: its blob upload, then the manifest PUT by digest through the
same authenticated session), cosign's `.sig` tag with skopeo copying an OCI layout directory.

Rules: the manifest goes out byte for byte (its digest is what was signed around); every
failure raises with the client's answer so the Rust side shows it.
"""

import json
import os
import subprocess
import tempfile

import trust_artifacts

VIAS = ("oras", "skopeo", "none")


def push(artifact, target):
    """Pushes `artifact` as `target` says: {"registry": "HOST:PORT", "repo": R, "via": one of
    VIAS, "user"?, "password"?}. Returns the pushed reference."""
    via = target.get("via", "oras")
    if via == "none":
        return None
    if via == "oras":
        return _push_oras(artifact, target)
    if via == "skopeo":
        return _push_skopeo(artifact, target)
    raise ValueError(f"unknown push method {via!r} (one of {VIAS})")


def _oras_client(target):
    import oras.client

    registry = target["registry"]
    client = oras.client.OrasClient(hostname=registry, insecure=True, auth_backend="basic")
    if target.get("user"):
        client.auth.set_basic_auth(target["user"], target["password"])
    return client


def _push_oras(artifact, target):
    import oras.container

    client = _oras_client(target)
    registry, repo = target["registry"], target["repo"]
    container = oras.container.Container(f"{registry}/{repo}@{artifact.digest}")
    with tempfile.TemporaryDirectory(prefix="trust-push-") as work:
        for index, blob in enumerate(artifact.blobs):
            path = os.path.join(work, f"blob-{index}")
            with open(path, "wb") as f:
                f.write(blob)
            layer = {"mediaType": "application/octet-stream",
                     "digest": trust_artifacts.digest_of(blob), "size": len(blob)}
            response = client.upload_blob(path, container, layer)
            if response.status_code not in (200, 201, 202):
                raise RuntimeError(f"oras blob upload: {response.status_code} {response.text}")
    response = client.do_request(
        f"http://{registry}/v2/{repo}/manifests/{artifact.reference}",
        "PUT",
        headers={"Content-Type": trust_artifacts.OCI_MANIFEST},
        data=artifact.manifest,
    )
    if response.status_code != 201:
        raise RuntimeError(f"oras manifest PUT: {response.status_code} {response.text}")
    served = response.headers.get("Docker-Content-Digest")
    if served != artifact.digest:
        raise RuntimeError(f"registry stored {served}, the signer made {artifact.digest}")
    return artifact.reference


def write_layout(directory, artifact, tag):
    """An OCI image layout holding `artifact` under ref name `tag` (skopeo's `oci:DIR:TAG`)."""
    blobs = os.path.join(directory, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    for blob in artifact.blobs + [artifact.manifest]:
        with open(os.path.join(blobs, trust_artifacts.digest_of(blob).split(":", 1)[1]), "wb") as f:
            f.write(blob)
    with open(os.path.join(directory, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": trust_artifacts.OCI_MANIFEST,
            "digest": artifact.digest,
            "size": len(artifact.manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }
    with open(os.path.join(directory, "index.json"), "w") as f:
        json.dump(index, f)


def _push_skopeo(artifact, target):
    if artifact.reference.startswith("sha256:"):
        raise ValueError("skopeo pushes to a tag; referrers go through oras")
    tag = artifact.reference
    with tempfile.TemporaryDirectory(prefix="trust-layout-") as layout:
        write_layout(layout, artifact, tag)
        command = ["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false",
                   "--preserve-digests"]
        if target.get("user"):
            command += ["--dest-creds", f"{target['user']}:{target['password']}"]
        else:
            command += ["--dest-no-creds"]
        command += [f"oci:{layout}:{tag}", f"docker://{target['registry']}/{target['repo']}:{tag}"]
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return tag
