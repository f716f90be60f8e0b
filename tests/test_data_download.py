"""fetch_file: mirrors, local copies, HTTP from a local server only, checksums, atomicity."""

import functools
import gzip
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import SHARED_MNIST
from scratchlab.core.errors import DataError
from scratchlab.data.download import MIRROR_ENV, Checksums, content_digest, fetch_file, file_digest

PAYLOAD = b"scratchlab test payload\n" * 100
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
WRONG_MD5 = "0" * 32
BY_MD5 = Checksums(md5=MD5)


MNIST = SHARED_MNIST
MNIST_MD5 = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


@pytest.fixture(autouse=True)
def no_env_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A directory holding data.bin (the good payload) and bad.bin (other bytes)."""
    directory = tmp_path / "src"
    directory.mkdir()
    (directory / "data.bin").write_bytes(PAYLOAD)
    (directory / "bad.bin").write_bytes(b"not the payload")
    return directory


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "dest"


@pytest.fixture
def server(src: Path) -> Iterator[str]:
    """Base URL of a local HTTP server (127.0.0.1, free port) serving ``src``."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(src))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_file_digest(src: Path) -> None:
    assert file_digest(src / "data.bin") == SHA256
    assert file_digest(src / "data.bin", "md5") == MD5


def test_local_copy_verified(src: Path, dest: Path) -> None:
    both = Checksums(md5=MD5, sha256=SHA256.upper())
    path = fetch_file("x.bin", [str(src / "data.bin")], dest, checksums=both)
    assert path == dest / "x.bin" and path.read_bytes() == PAYLOAD
    assert listing(dest) == ["x.bin"]


def test_file_url_is_a_local_path(src: Path, dest: Path) -> None:
    path = fetch_file("x.bin", [(src / "data.bin").as_uri()], dest, checksums=BY_MD5,
                      progress=False)
    assert path.read_bytes() == PAYLOAD


def test_existing_verified_file_is_reused(src: Path, dest: Path) -> None:
    fetch_file("x.bin", [str(src / "data.bin")], dest, checksums=BY_MD5)
    before = (dest / "x.bin").stat().st_mtime_ns
    path = fetch_file("x.bin", [str(src / "gone.bin")], dest, checksums=BY_MD5)
    assert path.stat().st_mtime_ns == before and listing(dest) == ["x.bin"]


def test_existing_wrong_file_is_replaced(src: Path, dest: Path) -> None:
    dest.mkdir()
    (dest / "x.bin").write_bytes(b"stale")
    fetch_file("x.bin", [str(src / "data.bin")], dest, checksums=Checksums(sha256=SHA256))
    assert (dest / "x.bin").read_bytes() == PAYLOAD


def test_existing_wrong_file_is_removed_when_refetch_fails(src: Path, dest: Path) -> None:
    dest.mkdir()
    (dest / "x.bin").write_bytes(b"stale")
    with pytest.raises(DataError, match="md5 is"):
        fetch_file("x.bin", [str(src / "bad.bin")], dest, checksums=BY_MD5)
    assert listing(dest) == []


def test_without_checksum_always_refetches(src: Path, dest: Path) -> None:
    dest.mkdir()
    (dest / "x.bin").write_bytes(b"old")
    fetch_file("x.bin", [str(src / "data.bin")], dest)
    assert (dest / "x.bin").read_bytes() == PAYLOAD


def test_local_checksum_mismatch(src: Path, dest: Path) -> None:
    with pytest.raises(DataError) as info:
        fetch_file("x.bin", [str(src / "bad.bin")], dest, checksums=BY_MD5)
    bad_md5 = hashlib.md5(b"not the payload").hexdigest()
    assert str(info.value) == f"x.bin: md5 is {bad_md5}, expected {MD5} (from {src / 'bad.bin'})"
    assert listing(dest) == []


def test_mirror_dir_is_tried_first(src: Path, dest: Path) -> None:
    (src / "x.bin").write_bytes(PAYLOAD)
    path = fetch_file("x.bin", [str(src / "bad.bin")], dest, checksums=BY_MD5, mirror=str(src))
    assert path.read_bytes() == PAYLOAD


def test_mirror_from_env(src: Path, dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (src / "x.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv(MIRROR_ENV, str(src))
    assert fetch_file("x.bin", [], dest, checksums=BY_MD5).read_bytes() == PAYLOAD
    # An explicit "" switches the environment's mirror off.
    with pytest.raises(DataError, match="no source to fetch it from"):
        fetch_file("y.bin", [], dest, mirror="")


def test_bad_mirror_falls_back_to_sources(src: Path, dest: Path) -> None:
    mirror = src / "mirror"
    mirror.mkdir()
    (mirror / "x.bin").write_bytes(b"corrupt")
    path = fetch_file("x.bin", [str(src / "data.bin")], dest, checksums=BY_MD5, mirror=str(mirror))
    assert path.read_bytes() == PAYLOAD and listing(dest) == ["x.bin"]


def test_all_sources_fail_in_one_line(src: Path, dest: Path) -> None:
    with pytest.raises(DataError) as info:
        fetch_file(
            "x.bin", [str(src / "bad.bin"), str(src / "nope")], dest, checksums=BY_MD5,
            mirror=str(src),
        )
    message = str(info.value)
    assert message.startswith("x.bin: all 3 sources failed: not found (from ")
    assert f"(from {src / 'x.bin'})" in message and f"(from {src / 'nope'})" in message
    assert f"md5 is {hashlib.md5(b'not the payload').hexdigest()}" in message
    assert "\n" not in message and listing(dest) == []


def test_directory_source_and_no_sources(src: Path, dest: Path) -> None:
    with pytest.raises(DataError, match=rf"^x.bin: not a regular file \(from {src}\)$"):
        fetch_file("x.bin", [str(src)], dest, mirror="")
    with pytest.raises(DataError, match="x.bin: no source to fetch it from"):
        fetch_file("x.bin", [], dest, mirror="")
    assert listing(dest) == []


def test_http_download(server: str, dest: Path) -> None:
    path = fetch_file("x.bin", [f"{server}/data.bin"], dest,
                      checksums=Checksums(md5=MD5, sha256=SHA256))
    assert path.read_bytes() == PAYLOAD and listing(dest) == ["x.bin"]


def test_http_mirror_base_url(server: str, src: Path, dest: Path) -> None:
    (src / "x.bin").write_bytes(PAYLOAD)
    path = fetch_file("x.bin", [], dest, checksums=Checksums(sha256=SHA256), mirror=server + "/",
                      progress=False)
    assert path.read_bytes() == PAYLOAD


def test_http_wrong_checksum_leaves_nothing(server: str, dest: Path) -> None:
    url = f"{server}/data.bin"
    with pytest.raises(DataError) as info:
        fetch_file("x.bin", [url], dest, checksums=Checksums(md5=WRONG_MD5), progress=False)
    assert str(info.value) == f"x.bin: md5 is {MD5}, expected {WRONG_MD5} (from {url})"
    assert listing(dest) == []


def test_http_404(server: str, dest: Path) -> None:
    url = f"{server}/missing.bin"
    with pytest.raises(DataError) as info:
        fetch_file("x.bin", [url], dest, checksums=BY_MD5, progress=False, mirror="")
    assert str(info.value) == f"x.bin: HTTP 404 File not found (from {url})"
    assert listing(dest) == []


def test_http_connection_refused(dest: Path) -> None:
    with socket.socket() as sock:  # grab a free port, then close it so nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.bin"
    with pytest.raises(DataError) as info:
        fetch_file("x.bin", [url], dest, progress=False)
    assert str(info.value) == (
        f"x.bin: connection refused by 127.0.0.1:{port} (from {url}); to use a local copy, "
        "set data.mirror or SCRATCHLAB_DATA_MIRROR to its directory"
    )
    assert listing(dest) == []


def test_unresolvable_host_is_named(dest: Path) -> None:
    """``.invalid`` never resolves (RFC 2606), so this needs no network and sends nothing."""
    url = "https://mnist.invalid/x.bin"
    with pytest.raises(DataError) as info:
        fetch_file("x.bin", [url], dest, progress=False, mirror="")
    assert str(info.value) == f"x.bin: cannot resolve mnist.invalid (no network?) (from {url})"
    assert listing(dest) == []


@pytest.mark.skipif(
    not all((MNIST / name).is_file() for name in MNIST_MD5), reason=f"no MNIST files in {MNIST}"
)
def test_real_mnist_mirror(tmp_path: Path) -> None:
    for name, md5 in MNIST_MD5.items():
        path = fetch_file(name, [], tmp_path, checksums=Checksums(md5=md5), mirror=str(MNIST),
                          progress=False)
        assert file_digest(path, "md5") == md5
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: md5 is ec29112dd5"):
        fetch_file(
            "t10k-labels-idx1-ubyte.gz", [], tmp_path / "other",
            checksums=Checksums(md5=WRONG_MD5), mirror=str(MNIST),
        )
    assert listing(tmp_path / "other") == []


# --- the content rule: official .gz md5 OR the decompressed content's sha256 -------------------


@pytest.fixture
def recompressed(tmp_path: Path) -> tuple[Path, Path, Checksums]:
    """The same IDX content gzipped twice with different settings (as Debian recompresses),
    and the checksums an official list would give for the first."""
    payload = bytes(range(256)) * 40
    official, other = tmp_path / "official" / "f.gz", tmp_path / "mirror" / "f.gz"
    for path, level, mtime in ((official, 9, 0), (other, 1, 12345)):
        path.parent.mkdir()
        path.write_bytes(gzip.compress(payload, compresslevel=level, mtime=mtime))
    assert official.read_bytes() != other.read_bytes()
    sums = Checksums(md5=file_digest(official, "md5"),
                     content_sha256=hashlib.sha256(payload).hexdigest())
    return official, other, sums


def test_official_gz_passes_by_its_md5(recompressed, dest: Path) -> None:
    official, _, sums = recompressed
    assert fetch_file("f.gz", [str(official)], dest, checksums=sums).is_file()


def test_recompressed_copy_passes_by_its_content(recompressed, dest: Path) -> None:
    _, other, sums = recompressed
    assert file_digest(other, "md5") != sums.md5 and content_digest(other) == sums.content_sha256
    assert fetch_file("f.gz", [str(other)], dest, checksums=sums).read_bytes() == other.read_bytes()


def test_neither_names_the_file_and_both_expectations(recompressed, dest: Path,
                                                      tmp_path: Path) -> None:
    _, _, sums = recompressed
    bad = tmp_path / "bad" / "f.gz"
    bad.parent.mkdir()
    bad.write_bytes(gzip.compress(b"other content"))
    with pytest.raises(DataError) as info:
        fetch_file("f.gz", [str(bad)], dest, checksums=sums)
    message = str(info.value)
    assert message.startswith(f"f.gz: md5 is {file_digest(bad, 'md5')}, expected {sums.md5} and ")
    assert f"content sha256 is {content_digest(bad)}, expected {sums.content_sha256}" in message
    assert "\n" not in message and listing(dest) == []


def test_a_truncated_gz_fails_the_content_rule(recompressed, dest: Path, tmp_path: Path) -> None:
    _, other, sums = recompressed
    cut = tmp_path / "cut.gz"
    cut.write_bytes(other.read_bytes()[:-20])
    with pytest.raises(DataError, match="content sha256 is unreadable"):
        fetch_file("f.gz", [str(cut)], dest, checksums=sums)


def test_download_progress_off_a_terminal_is_log_lines(server: str, src: Path, dest: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Where stderr is not a terminal (CI, nohup, DVC queue logs) a download draws no bar
    (whose carriage returns pile up into one line) but logs a line at each tenth."""
    payload = bytes(range(256)) * (40 * (1 << 16) // 256)  # 40 chunks of fetch_file's 64 KB
    (src / "big.bin").write_bytes(payload)
    with caplog.at_level("INFO", logger="scratchlab.progress"):
        fetch_file("big.bin", [f"{server}/big.bin"], dest, mirror="", progress=True)
    assert "\r" not in capsys.readouterr().err
    lines = [r.getMessage() for r in caplog.records if r.name == "scratchlab.progress"]
    assert lines == [f"big.bin: {10 * k}% of 2.62MB" for k in range(1, 11)]
