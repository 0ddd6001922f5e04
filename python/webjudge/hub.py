"""GGUF files by URL (a Hugging Face Hub ``resolve`` link, or any server with byte ranges),
downloaded once into a cache and loaded from there, with the standard library only.

The cache is ``$WEBJUDGE_CACHE/hub/`` (default ``~/.cache/webjudge/hub/``): a folder per URL
folder (so llama.cpp's split parts, ``NAME-00001-of-00003.gguf`` …, lie side by side, where the
native loader looks for them), holding each file under its own name and a record of it
(``NAME.json``: the URL, size, sha256, the host's ETag, whether the sha256 was checked).

What the host says a file is comes from HEAD requests that follow relative redirects only, as
huggingface_hub's do: the Hub's ``X-Linked-Etag`` (the LFS file's sha256) and ``X-Linked-Size``
on its redirect to the CDN, else the size and ETag of the file the redirects end at. A download streams into ``NAME.incomplete``, hashing as it goes; a broken transfer resumes
from the bytes there with a Range request, in the same run or a later one. Only a file of the
host's size whose sha256 is the host's (or the caller's ``sha256``) replaces the cached copy;
one that no hash vouches for is kept with a warning, its computed sha256 recorded so that a later
load sees the host's file change. A cached copy is used while the host's size and hash still
match it, and as it is when the host cannot be reached.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Callable, List, Optional, Union

from ._native import WebjudgeError, split_part_names

__all__ = ["DownloadError", "HashMismatch", "cache_path", "download", "is_url", "local_path"]

#: Called as bytes arrive: ``on_progress(done_bytes, total_bytes)``, over every part of a split
#: model; ``total_bytes`` is ``None`` where the host does not say a size.
Progress = Callable[[int, Optional[int]], object]

#: Bytes read from the connection at a time, and hashed and written.
CHUNK_BYTES = 1 << 20
#: Seconds a connection may stay silent before it counts as broken.
TIMEOUT_S = 60
#: Tries in a row that bring no new byte before a download gives up (a transfer that moves
#: is retried however often it breaks).
MAX_FAILED_TRIES = 3
#: Redirects a HEAD request follows to the response that names the file (the Hub: one, to its CDN).
MAX_REDIRECTS = 10

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(WebjudgeError):
    """A model's URL that could not be downloaded (the host refused it or cannot be reached,
    and no cached copy serves)."""


class HashMismatch(DownloadError):
    """A file whose sha256 is not the one expected (the caller's ``sha256``, or the host's);
    nothing of it is kept, and a copy cached before is left as it was."""

    def __init__(self, url: str, expected: str, expected_from: str, found: str, found_from: str) -> None:
        super().__init__(
            f"{url}: sha256 {found} ({found_from}) is not {expected} ({expected_from}); nothing was kept"
        )
        self.url, self.expected, self.found = url, expected, found


def is_url(path: object) -> bool:
    """Whether ``path`` is an ``http://`` or ``https://`` URL rather than a local path."""
    return isinstance(path, str) and path.lower().startswith(("http://", "https://"))


def _cache_root() -> Path:
    """Where downloads are kept: ``$WEBJUDGE_CACHE/hub``, else ``~/.cache/webjudge/hub``."""
    base = os.environ.get("WEBJUDGE_CACHE") or Path.home() / ".cache" / "webjudge"
    return Path(base) / "hub"


def _file_name(url: str) -> str:
    """The file name a URL ends in, checked to be a GGUF file's and a plain name."""
    path = urllib.parse.urlsplit(url).path
    name = urllib.parse.unquote(path.rsplit("/", 1)[-1])
    if not name.lower().endswith(".gguf"):
        raise DownloadError(f"{url}: only a GGUF file loads by URL (a path ending in .gguf)")
    if name.startswith(".") or any(c in name for c in "/\\\0"):
        raise DownloadError(f"{url}: {name!r} is no plain file name")
    return name


def cache_path(url: str) -> Path:
    """Where the file at ``url`` is kept once downloaded (whether or not it is yet)."""
    parts = urllib.parse.urlsplit(url)
    folder_url = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rsplit('/', 1)[0]}/"
    key = hashlib.sha256(folder_url.encode()).hexdigest()[:16]
    return _cache_root() / key / _file_name(url)


@dataclass(frozen=True)
class _Remote:
    """What the host says the file at ``url`` is: its size, the sha256 it vouches for
    (``X-Linked-Etag``) and its plain ETag, each ``None`` where it does not say."""

    url: str
    size: Optional[int]
    sha256: Optional[str]
    etag: Optional[str]


def _unquote_etag(value: Optional[str]) -> Optional[str]:
    """An ETag without its weak marker and quotes (``W/"abc"`` is ``abc``)."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"') or None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_head_opener = urllib.request.build_opener(_NoRedirect)
_REDIRECTS = (301, 302, 303, 307, 308)


def _head(url: str) -> "tuple[int, http.client.HTTPMessage]":
    """A HEAD request's status and headers, a redirect not followed."""
    try:
        with _head_opener.open(urllib.request.Request(url, method="HEAD"), timeout=TIMEOUT_S) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as answer:
        if answer.code not in _REDIRECTS + (405,):
            raise
        return answer.code, answer.headers


def _first_byte(url: str) -> "tuple[Optional[int], Optional[str]]":
    """The size and ETag of the file at ``url`` where its redirects end, from a one-byte range
    request (a CDN's signed link may answer GET alone, not HEAD)."""
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        headers = response.headers
        total = headers.get("Content-Range", "").rpartition("/")[2]
        length = total if response.status == 206 else headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None, _unquote_etag(headers.get("ETag"))


def _probe(url: str) -> _Remote:
    """The host's word on ``url``, read as huggingface_hub reads it: HEAD requests that follow
    relative redirects only (a renamed repository), so that the Hub's ``X-Linked-*`` headers on
    its redirect to the CDN are read; the size and ETag where the redirects end where those are
    missing. Raises ``OSError`` (``urllib.error.URLError``) where the host cannot be reached or
    refuses."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        status, headers = _head(current)
        location = headers.get("Location", "")
        if status not in _REDIRECTS or urllib.parse.urlsplit(location).netloc:
            break
        current = urllib.parse.urljoin(current, location)
    else:
        raise DownloadError(f"{url}: more than {MAX_REDIRECTS} redirects")
    linked = _unquote_etag(headers.get("X-Linked-Etag"))
    sha256 = linked.lower() if linked is not None and _SHA256.match(linked.lower()) else None
    linked_size = headers.get("X-Linked-Size", "")
    size = int(linked_size) if linked_size.isdigit() else None
    etag = _unquote_etag(headers.get("ETag"))
    if status == 200:
        length = headers.get("Content-Length", "")
        size = size if size is not None else int(length) if length.isdigit() else None
    elif size is None or (sha256 is None and status in _REDIRECTS) or status == 405:
        size, etag = _first_byte(current)
    return _Remote(url, size, sha256, etag)


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _incomplete_path(path: Path) -> Path:
    return path.with_name(path.name + ".incomplete")


def _cached(path: Path, url: str) -> Optional[dict]:
    """The record of the copy of ``url`` at ``path``, if that copy is whole (its recorded size)."""
    try:
        record = json.loads(_record_path(path).read_text())
        whole = record["url"] == url and path.stat().st_size == record["size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if whole else None


def _current(record: dict, remote: _Remote) -> bool:
    """Whether a cached copy is still the host's file."""
    if remote.size is not None and remote.size != record["size"]:
        return False
    if remote.sha256 is not None:
        return remote.sha256 == record["sha256"]
    return remote.etag is None or remote.etag == record.get("etag")


class _Transfer:
    """Bytes done over every file of one download, for ``on_progress``."""

    def __init__(self, total: Optional[int], on_progress: Optional[Progress]) -> None:
        self.done, self.total, self.on_progress = 0, total, on_progress

    def add(self, count: int) -> None:
        self.done += count
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)


def _identity(remote: _Remote) -> dict:
    """What a partial download is part of: a later run resumes it only while the host's file
    is still this one."""
    return {"url": remote.url, "size": remote.size, "sha256": remote.sha256, "etag": remote.etag}


def _fetch(remote: _Remote, incomplete: Path, transfer: _Transfer) -> "hashlib._Hash":
    """Downloads ``remote`` into ``incomplete``, after the bytes already there where they are
    of the same file, and returns the sha256 of the whole file's bytes."""
    hasher = hashlib.sha256()
    incomplete.parent.mkdir(parents=True, exist_ok=True)
    identity_path = _record_path(incomplete)
    try:
        same_file = json.loads(identity_path.read_text()) == _identity(remote)
    except (OSError, ValueError):
        same_file = False
    if not same_file:
        _write_json(identity_path, _identity(remote))
    with open(incomplete, "ab+") as file:
        file.seek(0)
        while same_file and (chunk := file.read(CHUNK_BYTES)):
            hasher.update(chunk)
        have = file.tell() if same_file else 0
        if not same_file or (remote.size is not None and have > remote.size):
            file.truncate(0)
            hasher, have = hashlib.sha256(), 0
        transfer.add(have)
        failed_tries = 0
        while remote.size is None or have < remote.size:
            request = urllib.request.Request(remote.url, headers={"Range": f"bytes={have}-"} if have else {})
            before = have
            error: Optional[Exception] = None
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                    if have and response.status != 206:
                        # The host sent the whole file: start again from its first byte.
                        transfer.add(-have)
                        file.truncate(0)
                        hasher, have = hashlib.sha256(), 0
                    elif have and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                        raise DownloadError(
                            f"{remote.url}: asked for the bytes from {have}, the host sent "
                            f"{response.headers.get('Content-Range')!r}; {incomplete} is kept"
                        )
                    while chunk := response.read(CHUNK_BYTES):
                        file.write(chunk)
                        hasher.update(chunk)
                        have += len(chunk)
                        transfer.add(len(chunk))
            except urllib.error.HTTPError as refused:
                if refused.code == 416 and remote.size is None:
                    break  # the bytes there are the whole file
                if refused.code < 500:
                    raise DownloadError(f"{remote.url}: the host answered {refused.code} {refused.reason}") from None
                error = refused
            except (OSError, http.client.HTTPException) as broken:
                error = broken
            finally:
                file.flush()
            if remote.size is None and error is None:
                break  # the response ended: the file did
            failed_tries = 0 if have > before else failed_tries + 1
            if failed_tries >= MAX_FAILED_TRIES:
                raise DownloadError(
                    f"{remote.url}: the download broke off at byte {have} of {remote.size} "
                    f"({error or 'no more bytes came'}); the next load resumes from there ({incomplete})"
                )
            time.sleep(0.5 * failed_tries)
    return hasher


def _write_json(path: Path, value: dict) -> None:
    """Writes ``path`` whole or not at all."""
    written = path.with_name(path.name + ".tmp")
    written.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(written, path)


def _download_file(path: Path, remote: _Remote, expected: Optional[str], transfer: _Transfer) -> None:
    """Downloads one file into ``path`` (replacing a copy there only once the new one is checked)
    and records it."""
    incomplete = _incomplete_path(path)
    computed = _fetch(remote, incomplete, transfer).hexdigest()
    size = incomplete.stat().st_size
    vouched = expected if expected is not None else remote.sha256
    wrong_size = remote.size is not None and size != remote.size
    if wrong_size or vouched is not None and computed != vouched:
        incomplete.unlink()
        _record_path(incomplete).unlink()
    if wrong_size:
        raise DownloadError(f"{remote.url}: {size} bytes arrived, the host said {remote.size}; nothing was kept")
    if vouched is not None and computed != vouched:
        expected_from = "sha256= asked for it" if expected is not None else "the host's X-Linked-Etag"
        raise HashMismatch(remote.url, vouched, expected_from, computed, "the downloaded bytes")
    if vouched is None:
        warnings.warn(
            f"{remote.url} comes with no sha256 (no X-Linked-Etag, no sha256=): not verified; "
            f"its sha256 {computed} is recorded in {_record_path(path)}",
            stacklevel=5,
        )
    os.replace(incomplete, path)
    _record_path(incomplete).unlink()
    record = {"url": remote.url, "size": size, "sha256": computed, "etag": remote.etag, "verified": vouched is not None}
    _write_json(_record_path(path), record)


def _part_urls(url: str) -> List[str]:
    """``url``, or where it names a part of a llama.cpp split model, every part's URL."""
    parts = urllib.parse.urlsplit(url)
    folder, name = parts.path.rsplit("/", 1)
    names = split_part_names(urllib.parse.unquote(name))
    if names is None:
        return [url]
    return [urllib.parse.urlunsplit(parts._replace(path=f"{folder}/{urllib.parse.quote(n)}")) for n in names]


def download(url: str, *, sha256: Optional[str] = None, on_progress: Optional[Progress] = None) -> Path:
    """The cached copy of the GGUF file at ``url``, downloaded first where there is none or the
    host's file is no longer it (every part of a split model, into one folder). ``sha256``: the
    file's expected hash, checked instead of the host's (not for a split model, whose parts
    each have their own). Raises :class:`HashMismatch` for a file that is not the one expected,
    :class:`DownloadError` where it cannot be had."""
    urls = _part_urls(url)
    if sha256 is not None:
        if len(urls) > 1:
            raise ValueError(
                f"{url} is a split model's part: sha256= names one file; each part is checked against the host's hash"
            )
        sha256 = sha256.lower()
        if not _SHA256.match(sha256):
            raise ValueError(f"sha256={sha256!r} is not 64 hex digits")
    paths = [cache_path(part) for part in urls]
    records = [_cached(path, part) for path, part in zip(paths, urls)]
    chosen = paths[urls.index(url)]
    if sha256 is not None and records[0] is not None and records[0]["sha256"] == sha256:
        return chosen  # the very file asked for, whatever the host serves now
    try:
        remotes = [_probe(part) for part in urls]
    except (OSError, http.client.HTTPException) as unreachable:
        if isinstance(unreachable, urllib.error.HTTPError) and unreachable.code < 500:
            raise DownloadError(f"{url}: the host answered {unreachable.code} {unreachable.reason}") from None
        if None in records or sha256 is not None:
            cached = "no copy is cached" if None in records else f"the cached copy's sha256 is not {sha256}"
            raise DownloadError(f"{url}: the host cannot be reached ({unreachable}), and {cached}") from None
        warnings.warn(f"{url}: the host cannot be reached ({unreachable}): using the cached copy", stacklevel=4)
        return chosen
    if sha256 is not None and remotes[0].sha256 not in (None, sha256):
        raise HashMismatch(url, sha256, "sha256= asked for it", remotes[0].sha256, "the host's X-Linked-Etag")
    # A copy cached with another sha256 than the one asked for is not that file, whatever the host says.
    stale = [
        i
        for i, (record, remote) in enumerate(zip(records, remotes))
        if record is None or sha256 is not None or not _current(record, remote)
    ]
    sizes = [remotes[i].size for i in stale]
    transfer = _Transfer(None if None in sizes else sum(s for s in sizes if s is not None), on_progress)
    for i in stale:
        _download_file(paths[i], remotes[i], sha256, transfer)
    return chosen


def local_path(
    path_or_url: Union[str, "PathLike[str]"], *, sha256: Optional[str] = None, on_progress: Optional[Progress] = None
) -> str:
    """A model path as the native loader takes it: a local path as it is, a URL's cached copy
    (:func:`download`). ``sha256`` is for a URL only."""
    if is_url(path_or_url):
        return str(download(str(path_or_url), sha256=sha256, on_progress=on_progress))
    if sha256 is not None:
        raise ValueError(f"sha256= checks a download; {path_or_url} is a local path")
    return str(path_or_url)
