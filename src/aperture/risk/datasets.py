"""Evaluation data on disk: the bundled copies, or an operator's directory (APERTURE_DATA_DIR).

Every file is read whole (they are small; the largest bundled file is under 2 MB, and anything
over 64 MiB is refused), hashed, and checked against the directory's `MANIFEST.json` when it
lists the file. The hashes go into every result so a run can be replayed on the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from aperture.core.errors import IntegrityFailure, NotFound, TooLarge, UnsafeInput
from aperture.risk.domain import Item, Suite, parse_chat_examples, parse_suite_items

MAX_DATA_FILE_BYTES = 64 * 1024 * 1024


def bundled_data_dir() -> Path:
    return Path(str(resources.files("aperture.risk") / "data"))


@dataclass(frozen=True, slots=True)
class DataFile:
    path: str
    text: str
    sha256: str


class DataDirectory:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or bundled_data_dir()).absolute()
        self.bundled = root is None
        self._manifest: dict[str, str] | None = None

    def _expected(self) -> dict[str, str]:
        if self._manifest is None:
            manifest = self.root / "MANIFEST.json"
            self._manifest = {}
            if manifest.is_file():
                try:
                    listed = json.loads(manifest.read_text())["files"]
                    self._manifest = {entry["path"]: entry["sha256"] for entry in listed}
                except (ValueError, KeyError, TypeError) as error:
                    raise IntegrityFailure(
                        f"{manifest} is not a valid data manifest ({error})",
                        hint="fix it, or remove it to skip hash checks for an operator data directory",
                    ) from None
        return self._manifest

    def read(self, relative: str) -> DataFile:
        parts = PurePosixPath(relative).parts
        if PurePosixPath(relative).is_absolute() or ".." in parts or not parts:
            raise UnsafeInput(f"data file path {relative!r} leaves the data directory", hint="use a relative path")
        path = self.root.joinpath(*parts)
        if not path.is_file():
            raise NotFound(
                f"evaluation data file {relative} is missing from {self.root}",
                hint="restore it, or set APERTURE_DATA_DIR to a directory that has it",
            )
        if path.stat().st_size > MAX_DATA_FILE_BYTES:
            raise TooLarge(f"{path} is larger than {MAX_DATA_FILE_BYTES} bytes", hint="split the data set")
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        expected = self._expected().get(relative)
        if expected is not None and expected != digest:
            raise IntegrityFailure(
                f"{path} does not match its manifest (sha256 {digest}, expected {expected})",
                hint="the file was changed: restore the original, or update MANIFEST.json if the change is intended",
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UnsafeInput(f"{path} is not UTF-8 text ({error})", hint="re-encode the file as UTF-8") from None
        return DataFile(relative, text, digest)

    def load_suite(self, suite: Suite) -> tuple[list[Item], dict[str, str]]:
        """The suite's items and the SHA-256 of each file they came from."""
        files = [self.read(relative) for relative in suite.files]
        items = parse_suite_items(suite, {f.path: f.text for f in files})
        return items, {f.path: f.sha256 for f in files}

    def load_conversations(self, relative: str) -> tuple[list[list[dict[str, str]]], str]:
        file = self.read(relative)
        return parse_chat_examples(file.text, relative), file.sha256
