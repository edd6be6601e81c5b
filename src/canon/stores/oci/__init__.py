"""OCI images at rest and on the wire.

spec      media types, descriptors, canonical JSON, parsing of manifests/indexes
layout    the OCI image layout directory (.canon/images): verified, atomic
auth      registry credentials (env, docker config) and the bearer-token dance
registry  the OCI distribution HTTP API client: push, pull, resolve
unpack    safe extraction of layers: every entry checked before a byte is written
"""
