"""The runtime layer of a base image: canon's model server, so the model image serves HTTP.

    /canon/runtime/canon/...     canon's own package files, as installed here (no bytecode)
    /canon/runtime/<wheels>      what ``canon serve`` imports, pinned (``observe.runtime``),
                                 installed for the image's platform and Python exactly as
                                 the environment layer is (``pip --target --platform
                                 --python-version --only-binary=:all: --no-deps``)
    /canon/serve.py              the model image's entrypoint (``LAUNCHER``)

The launcher puts ``/canon/runtime`` *first* on ``sys.path``: the server runs with the
versions canon was tested with even if the project's lock pins other ones of the same
packages. The base's ``PYTHONPATH`` lists it *last*, so in the experimentation image the
project's packages win and ``python3 -m canon.interfaces.cli.main`` still works.

The layer is cached by its key (runtime identity, platform, Python), like the
environment layer, and its files take the same fixed time, so every clone and every
commit built with one canon installation gets the same bytes.
"""

from __future__ import annotations

from canon.errors import ImageError
from canon.executors.image import environment
from canon.executors.image.tarball import Entry, Layer, build_layer
from canon.observe.runtime import Runtime
from canon.stores.oci.layout import ImageLayout

PREFIX = "canon/runtime"  # in the image: /canon/runtime
LAUNCHER_PATH = "canon/serve.py"  # in the image: /canon/serve.py
ENTRYPOINT = ("python3", f"/{LAUNCHER_PATH}")
DEFAULT_PORT = 8080

LAUNCHER = b'''"""canon: the model image's entrypoint, the HTTP model server (`canon serve`).

Serves the model image this file is in (its root is the directory above /canon: "/" in a
container). PORT (default 8080) and CANON_HOST (default 0.0.0.0) choose the address;
CANON_IMAGE_DIGEST, set by whoever runs the image, is what /provenance reports as the
image. Arguments are passed on to `canon serve`: `--port 9000` overrides PORT.
"""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path[0] = os.path.join(here, "runtime")  # canon and its server's pinned dependencies
from canon.interfaces.cli.main import main  # noqa: E402

args = ["serve", "--image-root", os.path.dirname(here),
        "--host", os.environ.get("CANON_HOST", "0.0.0.0"),
        "--port", os.environ.get("PORT", "8080")]
if os.environ.get("CANON_IMAGE_DIGEST"):
    args += ["--image-digest", os.environ["CANON_IMAGE_DIGEST"]]
main([*args, *sys.argv[1:]])
'''


def canon_entries(rt: Runtime) -> list[Entry]:
    """canon's package files under /canon/runtime/canon, read when written."""
    entries: list[Entry] = []
    for rel in rt.files:
        full = rt.package / rel
        size = full.stat().st_size
        entries.append(Entry(f"{PREFIX}/canon/{rel}", "file", False, full.read_bytes, size))
    return entries


def build_runtime_layer(
    layout: ImageLayout, rt: Runtime, platform: str, python: str, mtime: int
) -> Layer:
    if rt.missing:
        raise ImageError(
            "canon's model server is not installed here (missing: "
            f"{', '.join(rt.missing)}); every base image carries it",
            hint="pip install 'canon[serve]'",
        )
    with environment.installed(rt.requirements, platform, python, PREFIX) as wheels:
        entries = [*wheels, *canon_entries(rt), Entry.data(LAUNCHER_PATH, LAUNCHER, True)]
        return build_layer(layout, entries, mtime)
