"""fetch_dataset/load_dataset for all five datasets, manifests and config errors (no network)."""

import functools
import gzip
import hashlib
import http.server
import json
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from helpers import SHARED_FASHION, SHARED_MNIST
from scratchlab.core.errors import ConfigError, DataError
from scratchlab.data.base import RawDataset
from scratchlab.data.catalog import DATASETS
from scratchlab.data.download import MIRROR_ENV, file_digest
from scratchlab.data.ex3d1 import write_ex3d1
from scratchlab.data.idx import write_idx
from scratchlab.data.registry import fetch_dataset, load_dataset

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"


MNIST = SHARED_MNIST


@pytest.fixture(autouse=True)
def no_env_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)


def conf(name: str, **overrides: object) -> dict:
    """The shipped conf/data/<name>.yaml as a plain dict, with overrides."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    return {**cfg, **overrides}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --- digits -------------------------------------------------------------------------------------


def test_digits(tmp_path: Path) -> None:
    manifest = fetch_dataset(OmegaConf.load(CONF / "digits.yaml"), tmp_path / "raw", progress=False)
    assert manifest["name"] == "digits" and list(manifest["files"]) == ["digits.npz"]
    entry = manifest["files"]["digits.npz"]
    assert entry == {
        "sha256": file_digest(tmp_path / "raw" / "digits.npz"),
        "bytes": (tmp_path / "raw" / "digits.npz").stat().st_size,
    }
    assert json.loads((tmp_path / "raw" / "manifest.json").read_text()) == manifest
    assert listing(tmp_path / "raw") == ["digits.npz", "manifest.json"]

    again = fetch_dataset(conf("digits"), tmp_path / "other", progress=False)
    assert again == manifest  # byte-for-byte reproducible, so DVC sees no change

    data = load_dataset(conf("digits"), tmp_path / "raw")
    assert isinstance(data, RawDataset)
    assert (data.name, data.task) == ("digits", "classification")
    assert data.X.shape == (1797, 64) and data.X.max() == 16
    assert data.y.dtype == np.int64 and sorted(set(data.y.tolist())) == list(range(10))
    assert data.X_test is None and data.y_test is None
    assert data.class_names == [str(d) for d in range(10)]
    assert data.image_shape == (8, 8) and data.pixel_range == (0.0, 16.0)
    assert data.feature_names[:2] == ["pixel_0_0", "pixel_0_1"] and len(data.feature_names) == 64


# --- mnist --------------------------------------------------------------------------------------


def _tiny_idx_set(seed: int, train: int, test: int) -> dict[str, np.ndarray]:
    """Random 28x28 images and cycling labels under the official MNIST/Fashion-MNIST names."""
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(test) % 10).astype(np.uint8),
    }


@pytest.fixture
def mnist_mirror(tmp_path: Path) -> tuple[Path, dict]:
    """A directory with tiny IDX files under the official MNIST names, and a config for it."""
    mirror = tmp_path / "mirror"
    for name, array in _tiny_idx_set(0, train=12, test=5).items():
        write_idx(mirror / name, array)
    cfg = conf("mnist", mirror=str(mirror), base_urls=[])
    for entry in cfg["files"].values():
        entry["md5"] = md5(mirror / entry["name"])
    return mirror, cfg


def test_mnist_from_mirror(tmp_path: Path, mnist_mirror: tuple[Path, dict]) -> None:
    _, cfg = mnist_mirror
    manifest = fetch_dataset(cfg, tmp_path / "raw", progress=False)
    assert len(manifest["files"]) == 4 and manifest["source"]["mirror"] == cfg["mirror"]
    data = load_dataset(cfg, tmp_path / "raw")
    assert data.X.shape == (12, 28, 28) and data.X.dtype == np.uint8
    assert data.X_test.shape == (5, 28, 28) and data.y_test.tolist() == [0, 1, 2, 3, 4]
    assert data.y.dtype == np.int64 and data.pixel_range == (0.0, 255.0)
    assert data.image_shape == (28, 28) and data.class_names == [str(d) for d in range(10)]


def test_mnist_mirror_from_env(
    tmp_path: Path, mnist_mirror: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror, cfg = mnist_mirror
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    fetch_dataset({**cfg, "mirror": None}, tmp_path / "raw", progress=False)
    assert len(listing(tmp_path / "raw")) == 5


def test_mnist_bad_checksum_leaves_no_file(tmp_path: Path, mnist_mirror: tuple[Path, dict]) -> None:
    mirror, cfg = mnist_mirror
    cfg["files"]["test_labels"]["md5"] = "0" * 32
    with pytest.raises(
        DataError, match=r"^t10k-labels-idx1-ubyte.gz: md5 is [0-9a-f]{32}, expected"
    ):
        fetch_dataset(cfg, tmp_path / "raw", progress=False)
    assert "t10k-labels-idx1-ubyte.gz" not in listing(tmp_path / "raw")
    assert "manifest.json" not in listing(tmp_path / "raw")


def test_mnist_labels_out_of_range(tmp_path: Path, mnist_mirror: tuple[Path, dict]) -> None:
    mirror, cfg = mnist_mirror
    write_idx(mirror / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 12], dtype=np.uint8))
    cfg["files"]["test_labels"]["md5"] = md5(mirror / "t10k-labels-idx1-ubyte.gz")
    fetch_dataset(cfg, tmp_path / "raw", progress=False)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: labels span 0..12 \(expected"):
        load_dataset(cfg, tmp_path / "raw")


def test_mnist_files_config_error(tmp_path: Path) -> None:
    cfg = conf("mnist")
    del cfg["files"]["test_images"]
    with pytest.raises(ConfigError, match=r"data.files.test_images: missing \(it is required"):
        fetch_dataset(cfg, tmp_path / "raw", progress=False)


# --- ex3d1 --------------------------------------------------------------------------------------


@pytest.fixture
def ex3d1_file(tmp_path: Path) -> Path:
    X = np.tile(np.arange(400, dtype=np.float64) / 400, (4, 1))
    path = tmp_path / "src" / "ex3d1.xlsx"
    write_ex3d1(path, X, np.array([10, 1, 2, 10]))
    return path


def test_ex3d1_unpinned_records_sha256(
    tmp_path: Path, ex3d1_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = conf("ex3d1", url=str(ex3d1_file))
    with caplog.at_level(logging.INFO, logger="scratchlab.data.catalog"):
        manifest = fetch_dataset(cfg, tmp_path / "raw", progress=False)
    sha = file_digest(ex3d1_file)
    assert manifest["files"]["ex3d1.xlsx"]["sha256"] == sha
    assert f"ex3d1.xlsx: sha256 {sha} (set data.sha256 to pin it)" in caplog.text

    # Unpinned local files are copied afresh, so edits to them are picked up.
    write_ex3d1(ex3d1_file, np.zeros((4, 400)), np.array([10, 1, 2, 10]))
    fetch_dataset(cfg, tmp_path / "raw", progress=False)
    assert file_digest(tmp_path / "raw" / "ex3d1.xlsx") == file_digest(ex3d1_file) != sha

    data = load_dataset(cfg, tmp_path / "raw")
    assert data.X.shape == (4, 400) and data.X.dtype == np.float64 and data.X.max() == 0
    assert data.y.tolist() == [0, 1, 2, 0]  # 10 means digit 0
    assert data.image_shape == (20, 20) and data.pixel_range is None
    # Rows are stored column-major: the second value is pixel (row 1, column 0).
    assert data.feature_names[:2] == ["pixel_0_0", "pixel_1_0"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server (127.0.0.1, free port) and the directory it serves."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_ex3d1_unpinned_url_is_downloaded_once(
    tmp_path: Path, ex3d1_file: Path, server: tuple[str, Path]
) -> None:
    base, root = server
    shutil.copy(ex3d1_file, root / "ex3d1.xlsx")
    cfg = conf("ex3d1", url=f"{base}/ex3d1.xlsx")
    first = fetch_dataset(cfg, tmp_path / "raw", progress=False)
    before = (tmp_path / "raw" / "ex3d1.xlsx").stat().st_mtime_ns
    (root / "ex3d1.xlsx").unlink()  # the server no longer has it: the recorded copy must do
    assert fetch_dataset(cfg, tmp_path / "raw", progress=False) == first
    assert (tmp_path / "raw" / "ex3d1.xlsx").stat().st_mtime_ns == before
    assert load_dataset(cfg, tmp_path / "raw").y.tolist() == [0, 1, 2, 0]


def test_ex3d1_pinned_sha256_mismatch(tmp_path: Path, ex3d1_file: Path) -> None:
    cfg = conf("ex3d1", url=str(ex3d1_file), sha256="f" * 64)
    with pytest.raises(DataError, match=r"^ex3d1.xlsx: sha256 is [0-9a-f]{64}, expected f{64}"):
        fetch_dataset(cfg, tmp_path / "raw", progress=False)
    assert listing(tmp_path / "raw") == []


def test_ex3d1_mirror(tmp_path: Path, ex3d1_file: Path) -> None:
    cfg = conf("ex3d1", mirror=str(ex3d1_file.parent), sha256=file_digest(ex3d1_file))
    cfg["url"] = "http://127.0.0.1:9/never-contacted/ex3d1.xlsx"  # the mirror answers first
    fetch_dataset(cfg, tmp_path / "raw", progress=False)
    assert load_dataset(cfg, tmp_path / "raw").X.shape == (4, 400)


# --- idx ----------------------------------------------------------------------------------------


@pytest.fixture
def idx_pair(tmp_path: Path) -> tuple[Path, Path]:
    images, labels = tmp_path / "src" / "imgs.idx", tmp_path / "src" / "labs.idx"
    write_idx(images, np.zeros((6, 3, 5), dtype=np.uint8), gzip=False)
    write_idx(labels, np.array([0, 1, 2, 2, 1, 0], dtype=np.uint8))
    return images, labels


def test_idx_tiny(tmp_path: Path, idx_pair: tuple[Path, Path]) -> None:
    images, labels = idx_pair
    cfg = conf(
        "idx", images=images.as_uri(), labels=str(labels), sha256={"labs.idx": file_digest(labels)}
    )
    manifest = fetch_dataset(OmegaConf.create(cfg), tmp_path / "raw", progress=False)
    assert sorted(manifest["files"]) == ["imgs.idx", "labs.idx"]
    data = load_dataset(OmegaConf.create(cfg), tmp_path / "raw")
    assert data.X.shape == (6, 3, 5) and data.image_shape == (3, 5)
    assert data.class_names == ["0", "1", "2"] and data.pixel_range == (0.0, 255.0)


def test_idx_checksum_keyed_by_filename(tmp_path: Path, idx_pair: tuple[Path, Path]) -> None:
    images, labels = idx_pair
    cfg = conf("idx", images=str(images), labels=str(labels), md5={"imgs.idx": "0" * 32})
    with pytest.raises(DataError, match=rf"^imgs.idx: md5 is .*\(from {images}\)$"):
        fetch_dataset(cfg, tmp_path / "raw", progress=False)
    assert listing(tmp_path / "raw") == []


def test_idx_config_errors(tmp_path: Path, idx_pair: tuple[Path, Path]) -> None:
    images, labels = idx_pair
    with pytest.raises(ConfigError, match=r"data.images: no value given \(it is required"):
        fetch_dataset(OmegaConf.load(CONF / "idx.yaml"), tmp_path / "raw")
    with pytest.raises(DataError, match=rf"^data.labels: {tmp_path}/nope.gz not found \(relative"):
        fetch_dataset(conf("idx", images=str(images), labels=str(tmp_path / "nope.gz")), tmp_path)
    with pytest.raises(ConfigError, match="data.images and data.labels share the file name imgs"):
        fetch_dataset(conf("idx", images=str(images), labels=str(images)), tmp_path / "raw")


def test_idx_single_class(tmp_path: Path, idx_pair: tuple[Path, Path]) -> None:
    images, labels = idx_pair
    write_idx(labels, np.zeros(6, dtype=np.uint8))
    cfg = conf("idx", images=str(images), labels=str(labels))
    fetch_dataset(cfg, tmp_path / "raw", progress=False)
    with pytest.raises(DataError, match=r"labs.idx: a single class or no labels"):
        load_dataset(cfg, tmp_path / "raw")


@pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason=f"no real MNIST files in {MNIST}"
)
def test_idx_real_mnist_t10k(tmp_path: Path) -> None:
    cfg = conf(
        "idx",
        images=str(MNIST / "t10k-images-idx3-ubyte.gz"),
        labels=str(MNIST / "t10k-labels-idx1-ubyte.gz"),
        md5={
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    )
    manifest = fetch_dataset(cfg, tmp_path / "raw", progress=False)
    assert manifest["files"]["t10k-images-idx3-ubyte.gz"]["bytes"] == 1648877
    data = load_dataset(cfg, tmp_path / "raw")
    assert data.X.shape == (10000, 28, 28) and data.X.dtype == np.uint8
    assert np.bincount(data.y).sum() == 10000 and data.class_names == [str(d) for d in range(10)]
    assert data.X_test is None and data.image_shape == (28, 28)


# --- fashion_mnist -----------------------------------------------------------------------------


@pytest.fixture
def fashion_copy(tmp_path: Path) -> tuple[Path, dict]:
    """Tiny IDX files under Fashion-MNIST's names, recompressed apart from the "official" .gz
    the config's md5s describe, and a config pinning their content."""
    official, copy = tmp_path / "official", tmp_path / "copy"
    cfg = conf("fashion_mnist", base_urls=[])
    for name, array in _tiny_idx_set(1, train=20, test=10).items():
        write_idx(official / name, array)
        payload = gzip.decompress((official / name).read_bytes())
        copy.mkdir(exist_ok=True)
        (copy / name).write_bytes(gzip.compress(payload, compresslevel=1, mtime=7))
        entry = next(e for e in cfg["files"].values() if e["name"] == name)
        entry["md5"] = md5(official / name)
        entry["content_sha256"] = hashlib.sha256(payload).hexdigest()
    return copy, cfg


def test_fashion_mnist_from_a_recompressed_mirror(tmp_path: Path, fashion_copy) -> None:
    copy, cfg = fashion_copy
    manifest = fetch_dataset({**cfg, "mirror": str(copy)}, tmp_path / "raw", progress=False)
    assert manifest["name"] == "fashion_mnist" and len(manifest["files"]) == 4
    data = load_dataset({**cfg, "mirror": str(copy)}, tmp_path / "raw")
    assert data.class_names[0] == "T-shirt/top" and data.class_names[-1] == "Ankle boot"
    assert data.X.shape == (20, 28, 28) and data.X_test.shape == (10, 28, 28)


def test_fashion_mnist_uses_the_debian_copy_before_the_urls(
    tmp_path: Path, fashion_copy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scratchlab.data.catalog import FashionMnist

    copy, cfg = fashion_copy
    monkeypatch.setattr(FashionMnist, "local_copies", (str(copy),))
    cfg["base_urls"] = ["http://127.0.0.1:9/"]  # nothing listens there: the copy must do
    assert len(fetch_dataset(cfg, tmp_path / "raw", progress=False)["files"]) == 4


def test_fashion_mnist_neither_md5_nor_content_is_one_line(tmp_path: Path, fashion_copy) -> None:
    copy, cfg = fashion_copy
    write_idx(copy / "t10k-labels-idx1-ubyte.gz", np.arange(10, dtype=np.uint8)[::-1].copy())
    with pytest.raises(DataError) as info:
        fetch_dataset({**cfg, "mirror": str(copy)}, tmp_path / "raw", progress=False)
    message = str(info.value)
    assert message.startswith("t10k-labels-idx1-ubyte.gz: md5 is ") and "\n" not in message
    assert "decompressed content sha256 is" in message and f"(from {copy}" in message


@pytest.mark.skipif(not (SHARED_FASHION / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"no real Fashion-MNIST files in {SHARED_FASHION}")
def test_fashion_mnist_real_files_pass_by_content(tmp_path: Path) -> None:
    """Debian's recompressed copies: not the official .gz bytes, the same content."""
    cfg = conf("fashion_mnist", mirror=str(SHARED_FASHION), base_urls=[])
    manifest = fetch_dataset(cfg, tmp_path / "raw", progress=False)
    official = {e["name"]: e["md5"] for e in cfg["files"].values()}
    assert all(md5(tmp_path / "raw" / name) != official[name] for name in official)
    data = load_dataset(cfg, tmp_path / "raw")
    assert data.X.shape == (60000, 28, 28) and data.X_test.shape == (10000, 28, 28)
    assert np.bincount(data.y).tolist() == [6000] * 10
    assert len(manifest["files"]) == 4


# --- csv ----------------------------------------------------------------------------------------


def test_csv_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "external").mkdir(parents=True)
    (tmp_path / "data" / "external" / "table.csv").write_text("a,b,target\n1,2,x\n3,4,y\n5,6,x\n")
    manifest = fetch_dataset(conf("csv"), Path("raw"), progress=False)
    assert manifest["source"] == {"path": "data/external/table.csv"}
    assert listing(tmp_path / "raw") == ["manifest.json", "table.csv"]
    data = load_dataset(conf("csv"), Path("raw"))
    assert data.task == "classification" and data.class_names == ["x", "y"]
    assert (
        data.feature_names == ["a", "b"] and data.image_shape is None and data.pixel_range is None
    )
    assert data.y.tolist() == [0, 1, 0] and data.X.dtype == np.float64

    (tmp_path / "reg.csv").write_text("a,b\n1,2.5\n3,4.5\n5,6.5\n")
    regression = conf("csv", task="regression", target="b", path="reg.csv")
    fetch_dataset(regression, Path("raw"), progress=False)
    assert load_dataset(regression, Path("raw")).y.tolist() == [2.5, 4.5, 6.5]


def test_csv_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as info:
        fetch_dataset(conf("csv"), tmp_path / "raw", progress=False)
    assert str(info.value) == (
        "data.path: data/external/table.csv not found "
        f"(relative paths are relative to the working directory {tmp_path})"
    )
    assert listing(tmp_path / "raw") == []


# --- registry and manifest checks ---------------------------------------------------------------


def test_unknown_dataset(tmp_path: Path) -> None:
    assert tuple(DATASETS) == ("digits", "mnist", "fashion_mnist", "ex3d1", "idx", "csv")
    message = (r"^data.name='cifar' is not allowed; expected one of digits, mnist, fashion_mnist, "
               r"ex3d1, idx, csv$")
    with pytest.raises(ConfigError, match=message):
        fetch_dataset({"name": "cifar"}, tmp_path)
    with pytest.raises(ConfigError, match=message):
        load_dataset({"name": "cifar"}, tmp_path)


def test_image_dataset_cannot_be_regression(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.task='regression': dataset 'digits' only supports"):
        load_dataset(conf("digits", task="regression"), tmp_path)


@pytest.fixture
def fetched_digits(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    fetch_dataset(conf("digits"), raw, progress=False)
    return raw


def test_file_changed_after_fetch(fetched_digits: Path) -> None:
    with open(fetched_digits / "digits.npz", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(DataError, match=r"digits.npz: sha256 is \w+, manifest.json records \w+ \("):
        load_dataset(conf("digits"), fetched_digits)


def test_file_deleted_after_fetch(fetched_digits: Path) -> None:
    (fetched_digits / "digits.npz").unlink()
    with pytest.raises(DataError, match=r"digits.npz: missing, but .*manifest.json lists it"):
        load_dataset(conf("digits"), fetched_digits)


def test_manifest_problems(fetched_digits: Path, tmp_path: Path) -> None:
    manifest = fetched_digits / "manifest.json"
    with pytest.raises(DataError, match=r"manifest.json: holds dataset 'digits', expected 'csv'"):
        load_dataset(conf("csv", path="x/table.csv"), fetched_digits)
    manifest.write_text("{not json")
    with pytest.raises(DataError, match=r"manifest.json: not a readable manifest \("):
        load_dataset(conf("digits"), fetched_digits)
    manifest.write_text('{"name": "digits"}')
    with pytest.raises(DataError, match=r"manifest.json: expected keys 'name' and 'files'"):
        load_dataset(conf("digits"), fetched_digits)
    manifest.write_text('{"name": "digits", "files": {}}')
    with pytest.raises(DataError, match=r"manifest.json: does not list digits.npz"):
        load_dataset(conf("digits"), fetched_digits)
    with pytest.raises(DataError, match=r"manifest.json: not found \(run the fetch stage first\)"):
        load_dataset(conf("digits"), tmp_path / "empty")
