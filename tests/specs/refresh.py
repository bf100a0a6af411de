"""Refresh the published API descriptions in tests/specs/ (and their licence texts) from upstream.

    .venv/bin/python tests/specs/refresh.py [github] [kserve] [compose]   (all three by default)

To move to a newer upstream, change a pin below, run this, and review the diff. The GitHub subset keeps
the operations the current github/rest-api-subset.json holds, with every component they reference.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

OCTOKIT_OPENAPI = "23.0.2"  # npm package @octokit/openapi
# the registry's dist.integrity of its tarball: npm view @octokit/openapi@<version> dist.integrity
OCTOKIT_OPENAPI_INTEGRITY = (
    "sha512-pV8M7L9GY23AybNvTmo2nyjmpmnt6+2sRE/tqr0ZLQcPS4lnw7u5eZGNmwRNkBC3D7gZXbFx5AHzLUVRBXGDhg=="
)
KSERVE_COMMIT = "aaac4e294dae2c7b1aa1886447793f3aa1c30912"  # kserve/kserve
COMPOSE_SPEC_COMMIT = "170098ba07d9f53c383a41bfd4c5166b0a4529a6"  # compose-spec/compose-spec

HERE = Path(__file__).resolve().parent
GITHUB_SUBSET = HERE / "github" / "rest-api-subset.json"
# folder here -> repository, commit and paths of the files on GitHub, copied byte for byte
RAW_FILES = {
    "kserve": ("kserve/kserve", KSERVE_COMMIT,
               ["config/crd/full/serving.kserve.io_inferenceservices.yaml", "LICENSE"]),
    "compose": ("compose-spec/compose-spec", COMPOSE_SPEC_COMMIT,
                ["schema/compose-spec.json", "LICENSE", "NOTICE"]),
}


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.read()


def octokit_package() -> tuple[dict[str, Any], bytes]:
    """generated/api.github.com.json and LICENSE of the pinned @octokit/openapi, integrity checked."""
    tarball = download(f"https://registry.npmjs.org/@octokit/openapi/-/openapi-{OCTOKIT_OPENAPI}.tgz")
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if integrity != OCTOKIT_OPENAPI_INTEGRITY:
        raise SystemExit(f"@octokit/openapi {OCTOKIT_OPENAPI}: tarball integrity {integrity}, "
                         f"expected {OCTOKIT_OPENAPI_INTEGRITY}")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        description, licence = (archive.extractfile(f"package/{name}")
                                for name in ("generated/api.github.com.json", "LICENSE"))
        assert description is not None and licence is not None
        return json.load(description), licence.read()


def referenced_components(node: Any, upstream: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every component reachable through ``$ref`` from ``node``, transitively, by kind and name."""
    found: dict[str, dict[str, Any]] = {}
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/"):
                kind, name = ref.removeprefix("#/components/").split("/", 1)
                if name not in found.setdefault(kind, {}):
                    found[kind][name] = upstream["components"][kind][name]
                    pending.append(found[kind][name])
            pending.extend(item.values())
    return found


def github_subset(current: dict[str, Any], upstream: dict[str, Any]) -> dict[str, Any]:
    """The operations of ``current`` (same paths, same methods) as ``upstream`` describes them."""
    paths = {path: {method: upstream["paths"][path][method] for method in item}
             for path, item in current["paths"].items()}
    return {
        "openapi": upstream["openapi"],
        "info": {**upstream["info"], "description": current["info"]["description"]},
        "servers": upstream["servers"],
        "paths": paths,
        "components": referenced_components(paths, upstream),
    }


def write(target: Path, content: bytes) -> None:
    changed = not target.exists() or target.read_bytes() != content
    target.write_bytes(content)
    print(f"{target.relative_to(HERE)}: {'updated' if changed else 'unchanged'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", choices=["github", *RAW_FILES], help="default: all three")
    for which in parser.parse_args().which or ["github", *RAW_FILES]:
        if which == "github":
            upstream, licence = octokit_package()
            subset = github_subset(json.loads(GITHUB_SUBSET.read_text()), upstream)
            write(GITHUB_SUBSET, json.dumps(subset, indent=1, sort_keys=True).encode())
            write(HERE / "github" / "LICENSE", licence)
        else:
            repo, commit, paths = RAW_FILES[which]
            for path in paths:
                content = download(f"https://raw.githubusercontent.com/{repo}/{commit}/{path}")
                write(HERE / which / Path(path).name, content)


if __name__ == "__main__":
    main()
