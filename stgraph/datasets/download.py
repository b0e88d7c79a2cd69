"""Download dataset files safely, with the standard library only.

:func:`download` streams an ``http(s)`` URL into ``DEST.part``, resumes a
partial ``.part`` with an HTTP ``Range`` request, shows a tqdm progress bar,
checks the SHA-256 *before* the file is renamed into place (a file that fails
is moved aside to ``DEST.corrupt`` and never used) and renames atomically.
Redirects may only lead to ``http``/``https`` URLs, and no handler for
``file:``, ``ftp:`` or ``data:`` URLs is ever installed.

Archives are unpacked by :func:`stgraph.datasets.archives.extract`.
"""
from __future__ import annotations

import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import DownloadError
from ..files import replace_file, sha256_file

__all__ = ["download", "sha256_file", "verify_file", "looks_like_html", "DEFAULT_MAX_BYTES",
           "SafeRedirectHandler", "build_opener", "USER_AGENT", "CHUNK"]

log = logging.getLogger(__name__)

USER_AGENT = "stgraph-downloader/0.1 (+https://github.com; urllib)"
CHUNK = 1 << 20
_ALLOWED_SCHEMES = ("http", "https")
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


# ----------------------------------------------------------------- hashing
#: a download whose size no manifest states never reads more than this
DEFAULT_MAX_BYTES = 64 * 2**30


def verify_file(path: str | os.PathLike, sha256: str | None) -> str:
    """Hash ``path``; raise :class:`DownloadError` when it differs from ``sha256``."""
    digest = sha256_file(path)
    if sha256 is not None and digest != sha256.lower():
        raise DownloadError(
            f"'{path}': sha256 mismatch: found {digest}, expected {sha256.lower()}. "
            f"The file is damaged or is not the published file; delete it and download it again")
    return digest


# ----------------------------------------------------------------- opener
def _check_scheme(url: str, what: str = "URL") -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in _ALLOWED_SCHEMES or not parts.netloc:
        raise DownloadError(
            f"refusing {what} {url!r}: scheme {parts.scheme or '(none)'!r} is not allowed; "
            f"expected an http:// or https:// URL. Download the file by hand and put it in place")


class SafeRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to ``http``/``https`` URLs (never ``file:``, ``ftp:`` ...)."""

    max_redirections = 10

    @staticmethod
    def _check(req, newurl: str) -> str:
        absolute = urllib.parse.urljoin(req.full_url, newurl)
        parts = urlsplit(absolute)
        if parts.scheme.lower() not in _ALLOWED_SCHEMES or not parts.netloc:
            raise DownloadError(
                f"refusing redirect from {req.full_url!r} to {newurl!r}: scheme "
                f"{parts.scheme or '(none)'!r} is not allowed; only http(s) redirects are "
                f"followed. The server is misconfigured or hostile; get the file another way")
        return absolute

    def http_error_302(self, req, fp, code, msg, headers):
        # checked here, before urllib's own check, so every refused scheme gets the same message
        newurl = headers.get("location") or headers.get("uri")
        if newurl:
            self._check(req, newurl)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        absolute = self._check(req, newurl)
        # urllib copies the request headers (Range included) to the new request
        return super().redirect_request(req, fp, code, msg, headers, absolute)


def build_opener() -> urllib.request.OpenerDirector:
    """An opener with HTTP(S), proxies from the environment and safe redirects only.

    Unlike :func:`urllib.request.build_opener` it installs no ``file:``,
    ``ftp:`` or ``data:`` handler, so no URL can read local files.
    """
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(),
                    urllib.request.HTTPHandler(), urllib.request.HTTPSHandler(),
                    urllib.request.HTTPDefaultErrorHandler(), SafeRedirectHandler(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


# --------------------------------------------------------------- download
_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _tqdm(total, initial, desc, disable):
    try:
        from tqdm.auto import tqdm
    except Exception:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, disable=disable, leave=False)


class _Interrupted(Exception):
    """The transfer stopped early; the ``.part`` file holds what arrived."""


_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<!--")


def looks_like_html(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a body) is an HTML page."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith(_HTML_STARTS)


def _size_text(n: int) -> str:
    return f"{n:,} bytes" + (f" ({n / 2**20:.1f} MiB)" if n >= 2**20 else "")


def _one_attempt(opener, url, part: Path, *, resume: bool, timeout: float, progress: bool,
                 desc: str, expect_html: bool, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Fetch ``url`` into ``part`` (appending when the server honours Range)."""
    have = part.stat().st_size if (resume and part.exists()) else 0
    if not resume and part.exists():
        part.unlink()
    resp = _open(opener, url, part, have, timeout)
    with resp:
        final_url = resp.geturl()
        _check_scheme(final_url, "redirect target")
        status = getattr(resp, "status", None) or resp.getcode()
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if ctype.startswith("text/html") and not expect_html:
            raise DownloadError(
                f"{url}: the server sent an HTML page (Content-Type {ctype!r}) instead of the "
                f"file; this usually is a login, quota or 'virus scan' confirmation page "
                f"(Google Drive, Kaggle). Open the URL in a browser, download the file by hand "
                f"and put it at '{desc}'")
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        mode, start, total = _resumed_range(resp, url, part, have, status, length)
        if total is not None and total > max_bytes:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{url}: the server announces {_size_text(total)} for '{desc}', more than the "
                f"{_size_text(max_bytes)} expected; refusing to download it (check the URL, or raise the "
                f"manifest's size/max_size if the file really grew)")
        bar = _tqdm(total, start, desc=Path(desc).name, disable=not progress)
        try:
            got = _copy_body(resp, url, part, mode, start, bar, desc=desc, ctype=ctype, expect_html=expect_html,
                             max_bytes=max_bytes)
        finally:
            if bar is not None:
                bar.close()
        expected = length if length is not None else None
        if expected is not None and got < expected:
            raise _Interrupted(f"{url}: received {got} of {expected} bytes")
        if total is not None and part.stat().st_size != total:
            if part.stat().st_size > total:
                part.unlink(missing_ok=True)
            raise _Interrupted(f"{url}: have {part.stat().st_size if part.exists() else 0} "
                               f"bytes, expected {total}")


def _open(opener, url, part: Path, have: int, timeout: float):
    """The response to a GET of ``url`` (asking for the bytes from ``have`` on when ``have``); a
    refused range or a failed connection is :class:`_Interrupted` (retried), an HTTP error a
    :class:`DownloadError`."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT,
                                               "Accept-Encoding": "identity"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        return opener.open(req, timeout=timeout)
    except DownloadError:
        raise
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            # our .part is at least as long as the file: start again from zero
            part.unlink(missing_ok=True)
            raise _Interrupted(f"server refused range bytes={have}- (416); restarting") from None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; expected 200 or 206. "
                            f"Check the URL or get the file by hand") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, DownloadError):
            raise reason from None
        raise _Interrupted(f"cannot connect to {url}: {reason}") from None
    except (socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
        raise _Interrupted(f"{url}: {type(e).__name__}: {e}") from None


def _resumed_range(resp, url, part: Path, have: int, status, length: int | None) -> tuple[str, int, int | None]:
    """``(file mode, first byte, total size or None)`` of the answer: appending from ``have`` when the
    server sent the range asked for (206), from zero when it sent the whole file (200)."""
    if status == 206 and have:
        m = _RANGE_RE.match(resp.headers.get("Content-Range") or "")
        if not m or int(m.group(1)) != have:
            # a range we did not ask for: throw the partial file away
            part.unlink(missing_ok=True)
            raise _Interrupted(
                f"{url}: server answered 206 with Content-Range "
                f"{resp.headers.get('Content-Range')!r} for bytes={have}-; restarting")
        return "ab", have, int(m.group(3)) if m.group(3) != "*" else (have + length if length else None)
    if status == 200:
        return "wb", 0, length  # server ignored Range (or none sent): start over
    raise DownloadError(f"{url}: unexpected HTTP status {status}; expected 200 or 206")


def _copy_body(resp, url, part: Path, mode: str, start: int, bar, *, desc: str, ctype: str, expect_html: bool,
               max_bytes: int) -> int:
    """Write the body of ``resp`` to ``part`` (``mode``: append or write) block by block, refusing an HTML
    page and more than ``max_bytes``; returns the bytes received. A cut transfer is :class:`_Interrupted`."""
    got = 0
    first = True
    with open(part, mode) as f:
        while True:
            try:
                block = resp.read(CHUNK)
            except http.client.IncompleteRead as e:
                if e.partial:
                    f.write(e.partial)
                    got += len(e.partial)
                raise _Interrupted(f"{url}: connection closed after "
                                   f"{start + got} bytes") from None
            except (socket.timeout, TimeoutError, ConnectionError, OSError,
                    http.client.HTTPException) as e:
                raise _Interrupted(f"{url}: {type(e).__name__}: {e}") from None
            if not block:
                break
            if first and start == 0 and not expect_html and looks_like_html(block[:512]):
                f.close()
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"{url}: the server sent an HTML page (it starts with {block[:40]!r}) instead of "
                    f"the file (Content-Type {ctype or 'not given'!r}); this usually is an error, login "
                    f"or confirmation page. Nothing was saved. Open the URL in a browser, download the "
                    f"file by hand and put it at '{desc}'")
            first = False
            if start + got + len(block) > max_bytes:
                f.close()
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"{url}: more than {_size_text(max_bytes)} arrived for '{desc}' (the "
                    f"{'size the manifest states' if max_bytes != DEFAULT_MAX_BYTES else 'download cap'}); "
                    f"the server sends an endless or wrong body. The partial file was deleted; check the "
                    f"URL, or raise the manifest's size/max_size if the file really grew")
            f.write(block)
            got += len(block)
            if bar is not None:
                bar.update(len(block))
        f.flush()
        os.fsync(f.fileno())
    return got


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None,
             progress: bool = True, resume: bool = True, timeout: float = 60,
             retries: int = 3, backoff: float = 1.0, max_bytes: int | None = None) -> Path:
    """Download ``url`` to ``dest`` and return ``Path(dest)``.

    Bytes go to ``dest + '.part'``; an existing ``.part`` is resumed with an
    HTTP ``Range`` request (a server that answers ``200`` instead of ``206``
    makes the download start over). A transfer cut short is retried up to
    ``retries`` times, resuming each time. When ``sha256`` is given the whole
    file is hashed before it is renamed into place: on a mismatch it is moved
    to ``dest + '.corrupt'`` and :class:`DownloadError` is raised, so ``dest``
    never holds a bad file. The rename is atomic (:func:`stgraph.files.replace_file`).
    At most ``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`) are read: a larger announced
    size or an endless body is refused and the partial file deleted. A body that is an
    HTML page (where a data file is expected) is refused whatever its Content-Type.

    Raises:
        DownloadError: non-http(s) URL or redirect, HTTP error, an HTML page or
            a Git LFS pointer instead of the file, checksum mismatch, or the
            transfer still incomplete after ``retries`` attempts (the ``.part``
            is kept so a later call resumes).
    """
    url = str(url)
    _check_scheme(url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    corrupt = dest.with_name(dest.name + ".corrupt")
    expect_html = dest.suffix.lower() in (".html", ".htm")
    opener = build_opener()
    if sha256 is not None:
        sha256 = sha256.strip().lower()

    last: str | None = None
    for attempt in range(max(0, int(retries)) + 1):
        try:
            _one_attempt(opener, url, part, resume=resume or attempt > 0, timeout=timeout,
                         progress=progress, desc=str(dest), expect_html=expect_html,
                         max_bytes=int(max_bytes) if max_bytes is not None else DEFAULT_MAX_BYTES)
            break
        except _Interrupted as e:
            last = str(e)
            if attempt < retries:
                log.info("%s: attempt %d of %d stopped early (%s); retrying", url, attempt + 1, retries + 1, last)
                time.sleep(backoff * (attempt + 1))
    else:
        have = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"{url}: download to '{dest}' did not complete after {retries + 1} attempt(s): "
            f"{last}. {have} bytes are kept in '{part}'; run the download again to resume")

    if part.stat().st_size < 1024:
        with open(part, "rb") as f:
            head = f.read(len(_LFS_POINTER))
        if head == _LFS_POINTER:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{url}: got a Git LFS pointer, not the file; expected the file's bytes. Use "
                f"the repository's 'media' URL or download the file from its web page")
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256:
        os.replace(part, corrupt)
        raise DownloadError(
            f"{url}: sha256 mismatch for '{dest}': found {digest}, expected {sha256}. The "
            f"download is corrupt or the file changed upstream; it was moved to '{corrupt}' "
            f"and not used. Delete it and download again, or check the manifest's sha256")
    replace_file(part, dest)
    return dest
