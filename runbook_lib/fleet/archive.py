"""A folder as bytes and back: how migrations reach, and run folders return from, workers that do not
share the client's disk (a Dask scheduler elsewhere).

Unpacking refuses absolute paths, `..` and links, so a returned archive cannot write outside its folder.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from runbook_lib.errors import FleetError


def pack(folder: Path) -> bytes:
    """Every file and folder under `folder`, as a gzipped tar, paths relative to `folder`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()


def unpack(data: bytes, into: Path) -> None:
    """What `pack` made, into `into` (created if needed)."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        try:
            tar.extractall(into, filter="data")  # no absolute paths, no links out of the folder
        except TypeError:  # Python without extraction filters
            for member in tar.getmembers():
                if (
                    member.name.startswith("/")
                    or ".." in Path(member.name).parts
                    or not (member.isfile() or member.isdir())
                ):
                    raise FleetError(
                        f"A returned run folder holds an unsafe entry {member.name!r}; nothing was written."
                    ) from None
            tar.extractall(into)
