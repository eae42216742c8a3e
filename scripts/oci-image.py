#!/usr/bin/env python3
"""Packages keygate.wasm as an OCI image for Istio's WasmPlugin, without a container engine.

The image is the "compat" variant of the Wasm image specification (solo-io/wasm, spec-compat.md),
which Istio's agent reads: a standard OCI image whose single layer,
`application/vnd.oci.image.layer.v1.tar+gzip`, is a tar holding `plugin.wasm`, with the manifest
annotation `module.wasm.image/variant: compat`. It is written as an OCI image layout directory
(`oci-layout`, `index.json`, `blobs/sha256/…`), which `skopeo copy oci:DIR:TAG docker://…` pushes.

The output is deterministic: the same .wasm gives the same bytes and so the same digests (fixed
mtimes and owners in the tar, no timestamp or name in the gzip header, canonical JSON).

    scripts/oci-image.py --wasm target/wasm32-wasip1/release/keygate.wasm \
        --out target/oci/keygate --tag 0.1.0

`make oci` runs it; tests/integration/deploy.rs runs it and inspects the layout.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# The file name Istio looks for in the layer.
PLUGIN_FILE = "plugin.wasm"


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def layer_tar(wasm):
    """A tar with one regular file, plugin.wasm, owned by 0:0, mode 0644, mtime 0."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN_FILE)
        info.size = len(wasm)
        info.mode = 0o644
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def gzipped(data):
    buf = io.BytesIO()
    # filename="" and mtime=0 keep the header free of anything that varies between builds.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


class Layout:
    def __init__(self, root):
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")

    def blob(self, data, media_type):
        """Stores a blob and returns its descriptor."""
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blobs, digest), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def build(wasm_path, out, tag):
    with open(wasm_path, "rb") as f:
        wasm = f.read()
    if not wasm.startswith(b"\0asm"):
        sys.exit(f"oci-image: {wasm_path} is not a WebAssembly module (no \\0asm header)")

    # A fresh directory: a stale blob from an earlier build must not linger in the layout.
    if os.path.exists(out):
        shutil.rmtree(out)
    layout = Layout(out)
    os.makedirs(layout.blobs)

    tar = layer_tar(wasm)
    layer = layout.blob(gzipped(tar), MEDIA_LAYER)
    config = layout.blob(
        canonical_json(
            {
                # Go's names for a WASI module; Istio does not look at them.
                "architecture": "wasm",
                "os": "wasip1",
                "config": {},
                "rootfs": {
                    "type": "layers",
                    "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()],
                },
                "history": [{"created_by": "make oci (scripts/oci-image.py)"}],
            }
        ),
        MEDIA_CONFIG,
    )
    manifest = layout.blob(
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": config,
                "layers": [layer],
                "annotations": {
                    # Required by the compat variant with the OCI layer media type.
                    "module.wasm.image/variant": "compat",
                    "org.opencontainers.image.title": "keygate",
                    "org.opencontainers.image.description": (
                        "keygate proxy-wasm filter: JWT API keys verified in Envoy"
                    ),
                    "org.opencontainers.image.version": tag,
                },
            }
        ),
        MEDIA_MANIFEST,
    )
    manifest["annotations"] = {"org.opencontainers.image.ref.name": tag}

    with open(os.path.join(out, "oci-layout"), "wb") as f:
        f.write(canonical_json({"imageLayoutVersion": "1.0.0"}))
    with open(os.path.join(out, "index.json"), "wb") as f:
        f.write(
            canonical_json({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest]})
        )
    return manifest["digest"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wasm", required=True, help="the filter, e.g. target/…/keygate.wasm")
    parser.add_argument("--out", required=True, help="the OCI layout directory (replaced)")
    parser.add_argument("--tag", required=True, help="the tag recorded in index.json")
    args = parser.parse_args()
    digest = build(args.wasm, args.out, args.tag)
    print(f"OCI image layout: {args.out} (tag {args.tag})")
    print(f"manifest digest:  {digest}")
    print("push it with:")
    print(f"  skopeo copy oci:{args.out}:{args.tag} docker://REGISTRY/keygate:{args.tag}")


if __name__ == "__main__":
    main()
