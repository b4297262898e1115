"""The official AsyncAPI 3.0.0 JSON schema, from the npm package ``@asyncapi/specs``.

`asyncapi_schema()` runs ``npm pack @asyncapi/specs@6`` once into a cache outside the
repository (``$STREAMKIT_CACHE`` or ``~/.cache/fastapi-streamkit``) and reads the package's
bundled ``schemas/3.0.0-without-$id.json`` (draft-07, definitions inline). Without npm (and
no cached copy) the calling test skips, or fails when ``STREAMKIT_REQUIRE_NPM=1``.
`validate_asyncapi(document)` checks a document against it and checks that every local
``$ref`` points at something.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator  # type: ignore[import-untyped]

from tests.conftest import require

PACKAGE = "@asyncapi/specs@6"
SCHEMA_FILE = "package/schemas/3.0.0-without-$id.json"


def cache_dir() -> Path:
    base = os.environ.get("STREAMKIT_CACHE") or Path.home() / ".cache" / "fastapi-streamkit"
    return Path(base) / "asyncapi-specs"


def _fetch(target: Path) -> None:
    """``npm pack`` the package and extract it into ``target`` (atomically)."""
    npm = shutil.which("npm")
    if npm is None:
        require("NPM", "npm is not installed: install Node.js/npm to fetch @asyncapi/specs")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        try:
            subprocess.run(
                [str(npm), "pack", PACKAGE, "--silent", "--pack-destination", work],
                cwd=work,
                check=True,
                capture_output=True,
                timeout=180,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output = getattr(exc, "stderr", b"") or b""
            require("NPM", f"`npm pack {PACKAGE}` failed: {exc}; {output.decode()[-500:]}")
        (tarball,) = Path(work).glob("*.tgz")
        extracted = Path(work) / "extracted"
        with tarfile.open(tarball) as archive:
            archive.extractall(extracted, filter="data")
        if not target.exists():  # another test process may have won the race
            os.replace(extracted, target)


@functools.cache
def asyncapi_schema() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 JSON schema (fetched on first use, then cached on disk)."""
    target = cache_dir() / "specs-6"
    if not (target / SCHEMA_FILE).exists():
        _fetch(target)
    schema: dict[str, Any] = json.loads((target / SCHEMA_FILE).read_text())
    assert schema["properties"]["asyncapi"]["const"] == "3.0.0"
    return schema


def _local_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _local_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _local_refs(value)]
    return []


def resolve(document: dict[str, Any], ref: str) -> Any:
    """The node a local ``#/a/b`` reference points at (KeyError when it points nowhere)."""
    assert ref.startswith("#/"), f"expected a local reference, got {ref!r}"
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def validate_asyncapi(document: dict[str, Any]) -> None:
    """Fail with every schema violation listed, or with the first dangling ``$ref``."""
    validator = Draft7Validator(asyncapi_schema(), format_checker=Draft7Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    messages = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    assert not messages, "not a valid AsyncAPI 3.0.0 document:\n" + "\n".join(messages)
    for ref in _local_refs(document):
        try:
            resolve(document, ref)
        except (KeyError, IndexError, TypeError):
            raise AssertionError(f"$ref {ref!r} points at nothing in the document") from None
    json.dumps(document)  # and it is plain JSON
