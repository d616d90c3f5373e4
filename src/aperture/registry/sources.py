"""Reading a model from the file system safely: which files, and what their headers say.

The walk never follows a symbolic link out of the model directory: a link whose target leaves
the tree is refused, a link to a file inside the tree is stored under the link's own path, and
links to directories are refused. Special files (FIFOs, devices, sockets) are refused before
anything opens them. Headers are read through the bounded parsers of `registry.domain`.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from aperture.core.errors import InvalidInput, NotFound, TooLarge, UnsafeInput
from aperture.registry.domain import (
    DEFAULT_LIMITS,
    SKIPPED_AT_ROOT,
    FileKind,
    HeaderLimits,
    WeightFormat,
    WeightsInfo,
    check_relative_path,
    classify,
    is_pickle_name,
    looks_like_pickle,
    parse_gguf,
    parse_safetensors,
    pickle_refusal,
    weight_format,
)
from aperture.vault.artifacts import SourceFile

_OPEN = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class PlannedFile:
    relative: str
    kind: FileKind
    source: SourceFile


@dataclass(frozen=True, slots=True)
class SourcePlan:
    root: Path
    single_file: bool
    files: tuple[PlannedFile, ...]
    skipped: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.source.size for f in self.files)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _planned(relative: str, real: str, info: os.stat_result, limits: HeaderLimits) -> PlannedFile:
    relative = check_relative_path(relative, limits)
    if is_pickle_name(relative):
        raise pickle_refusal(relative)
    return PlannedFile(
        relative,
        classify(relative),
        SourceFile.planned(Path(real), info, relative),
    )


def plan_source(path: Path, limits: HeaderLimits = DEFAULT_LIMITS) -> SourcePlan:
    """List the files to register from a single weights file or a model directory."""
    try:
        top = os.path.realpath(path, strict=True)
    except FileNotFoundError:
        raise NotFound(f"{path} does not exist", hint="check the path (a file or a model directory)") from None
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror}", hint="check the path and permissions") from None
    info = Path(top).stat()
    if stat.S_ISREG(info.st_mode):
        name = Path(top).name
        if is_pickle_name(name):
            raise pickle_refusal(name)
        if weight_format(name) is None:
            raise InvalidInput(
                f"{path} is neither a .safetensors nor a .gguf file",
                hint="register a .safetensors or .gguf file, or a Hugging Face model directory",
            )
        planned = _planned(name, top, info, limits)
        return SourcePlan(Path(top).parent, True, (planned,), ())
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeInput(f"{path} is not a regular file or directory", hint="register a file or a directory")
    files: list[PlannedFile] = []
    skipped: list[str] = []
    _walk(top, top, "", files, skipped, limits)
    files.sort(key=lambda f: f.relative)
    return SourcePlan(Path(top), False, tuple(files), tuple(sorted(skipped)))


def _walk(
    root: str, directory: str, prefix: str, files: list[PlannedFile], skipped: list[str], limits: HeaderLimits
) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as error:
        raise InvalidInput(f"cannot list {directory}: {error.strerror}", hint="check permissions") from None
    for entry in entries:
        relative = prefix + entry.name
        if not prefix and entry.name in SKIPPED_AT_ROOT:
            skipped.append(relative)
            continue
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if not _inside(target, root):
                raise UnsafeInput(
                    f"{relative} is a symbolic link to {target}, outside the model directory",
                    hint="copy the file into the directory (e.g. `cp -L`), or register the directory it points to",
                )
            try:
                info = Path(target).stat(follow_symlinks=False)
            except FileNotFoundError:
                raise InvalidInput(f"{relative} is a broken symbolic link", hint="remove or fix the link") from None
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeInput(
                    f"{relative} is a symbolic link to a directory or special file",
                    hint="replace the link with the files themselves",
                )
            files.append(_planned(relative, target, info, limits))
        elif entry.is_dir(follow_symlinks=False):
            if relative.count("/") + 1 >= limits.path_depth:
                raise UnsafeInput(f"{relative} is nested too deeply", hint="flatten the model directory")
            _walk(root, entry.path, relative + "/", files, skipped, limits)
        elif entry.is_file(follow_symlinks=False):
            files.append(_planned(relative, entry.path, entry.stat(follow_symlinks=False), limits))
        else:
            raise UnsafeInput(
                f"{relative} is a special file (FIFO, socket or device)", hint="remove it from the model directory"
            )
        if len(files) > limits.files_per_model:
            raise TooLarge(
                f"the directory holds more than {limits.files_per_model} files",
                hint="register the model directory only, not a parent folder",
            )


def _open(planned: PlannedFile) -> io.BufferedReader:
    fd = os.open(planned.source.path, _OPEN)
    return io.BufferedReader(io.FileIO(fd, "rb", closefd=True), buffer_size=1 << 20)


def sniff_pickle(planned: PlannedFile) -> None:
    """Refuse a pickle whatever its name: protocol 2-5 header and a final STOP opcode."""
    if planned.source.size < 3:
        return
    fd = os.open(planned.source.path, _OPEN)
    try:
        head, tail = os.pread(fd, 2, 0), os.pread(fd, 1, planned.source.size - 1)
    finally:
        os.close(fd)
    if looks_like_pickle(head) and tail == b".":
        raise pickle_refusal(planned.relative)


def read_weights(planned: PlannedFile, limits: HeaderLimits = DEFAULT_LIMITS) -> WeightsInfo:
    fmt = weight_format(planned.relative)
    with _open(planned) as reader:
        try:
            if fmt is WeightFormat.SAFETENSORS:
                return parse_safetensors(reader, planned.source.size, limits)
            return parse_gguf(reader, planned.source.size, limits)
        except (InvalidInput, UnsafeInput) as error:
            error.message = f"{planned.relative}: {error.message}"
            error.args = (error.message,)
            raise


def read_document(planned: PlannedFile, limits: HeaderLimits = DEFAULT_LIMITS) -> bytes:
    if planned.source.size > limits.json_document_bytes:
        raise TooLarge(
            f"{planned.relative} is larger than {limits.json_document_bytes} bytes", hint="this is not a plain config"
        )
    with _open(planned) as reader:
        return reader.read(limits.json_document_bytes + 1)
