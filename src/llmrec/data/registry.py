"""Public datasets known by name, and where to find them.

Resolution order for `resolve_dataset(name)`:
1. an explicit path (a directory holding the dataset's files, or one of the files);
2. the cache directory: ``$LLMREC_CACHE_DIR`` or ``~/.cache/llmrec``, sub-folder ``<name>``;
3. a mirror directory (sub-folder ``<name>``, the files in their original layout): ``$LLMREC_DATA_MIRROR``, else a
   ``shared/datasets`` folder in or beside the current folder or the llmrec checkout (`mirror_dir`);
4. a download from the public source into the cache, verified against the pinned SHA-256.
Every file found is verified against its pinned SHA-256; a mismatch (corrupted or truncated file) is refused.

Pins: the S3-Rec files (beauty, lastfm) and MovieLens 100K are pinned to the copies used in development
(`../shared/datasets/SHA256SUMS`). Files marked ``sha256=None`` are not pinned yet (we have not had a copy to hash):
they are used with a warning, and their computed hash is written into the prepared dataset's manifest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from llmrec.atomic import atomic_directory
from llmrec.errors import ChecksumError, DatasetNotFoundError

__all__ = [
    "DATASETS",
    "DatasetFile",
    "DatasetSpec",
    "ResolvedDataset",
    "cache_dir",
    "resolve_dataset",
    "sha256_file",
]

_S3REC_URL = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/master/data/"
_GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class DatasetFile:
    name: str  # file name inside the dataset folder
    sha256: str | None  # pinned hash; None = not pinned yet
    required: bool = True


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    format: str  # reader: "s3rec" | "movielens"
    domain: str  # "ecommerce" | "movies" | "music" | "news"
    files: tuple[DatasetFile, ...]
    url: str  # a base URL (files fetched one by one) or a .zip archive
    archive_prefix: str = ""  # folder inside the zip archive
    description: str = ""

    @property
    def main_file(self) -> str:
        return self.files[0].name


def _s3rec(
    name: str, stem: str, domain: str, txt_sha: str | None, attr_sha: str | None, desc: str, titles_sha: str | None = None
) -> DatasetSpec:
    """An S3-Rec data set: the log, its item2attributes.json and, where one exists, ``<stem>_items.csv`` with the
    items' real titles (``item_id,asin,title``; the S3-Rec release has none, so it is never downloaded)."""
    return DatasetSpec(
        name=name,
        format="s3rec",
        domain=domain,
        files=(
            DatasetFile(f"{stem}.txt", txt_sha),
            DatasetFile(f"{stem}_item2attributes.json", attr_sha, required=False),
            DatasetFile(f"{stem}_items.csv", titles_sha, required=False),
        ),
        url=_S3REC_URL,
        description=desc,
    )


DATASETS: dict[str, DatasetSpec] = {
    "beauty": _s3rec(
        "beauty",
        "Beauty",
        "ecommerce",
        "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
        "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
        "Amazon Beauty 5-core as preprocessed by S3-Rec (CIKM 2020): 22,363 users, 12,101 items, 198,502 events; "
        "with Beauty_items.csv, every item's Amazon product title.",
        "dd1aafae4bcb2903bfdeb3aede15fe3797cdc9fd1fcb4dba3d2b46c79a38a062",
    ),
    "sports": _s3rec("sports", "Sports_and_Outdoors", "ecommerce", None, None, "Amazon Sports and Outdoors 5-core (S3-Rec)."),
    "toys": _s3rec("toys", "Toys_and_Games", "ecommerce", None, None, "Amazon Toys and Games 5-core (S3-Rec)."),
    "yelp": _s3rec("yelp", "Yelp", "ecommerce", None, None, "Yelp business reviews (S3-Rec preprocessing)."),
    "lastfm": _s3rec(
        "lastfm",
        "LastFM",
        "music",
        "9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802",
        "a4ccd678dc9ff6d43fe5073f491db5c9b02eb98dfa4f8c0382913a784be217ef",
        "LastFM artist listening (S3-Rec preprocessing): 1,090 users, 3,646 items, 52,551 events.",
    ),
    "ml-100k": DatasetSpec(
        name="ml-100k",
        format="movielens",
        domain="movies",
        files=(
            DatasetFile("u.data", "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"),
            DatasetFile("u.item", "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701"),
            DatasetFile("u.user", "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c"),
            DatasetFile("u.genre", "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb"),
        ),
        url=_GROUPLENS_URL + "ml-100k.zip",
        archive_prefix="ml-100k/",
        description="MovieLens 100K (GroupLens): 943 users, 1,682 movies, 100,000 ratings.",
    ),
    "ml-1m": DatasetSpec(
        name="ml-1m",
        format="movielens",
        domain="movies",
        files=(DatasetFile("ratings.dat", None), DatasetFile("movies.dat", None), DatasetFile("users.dat", None)),
        url=_GROUPLENS_URL + "ml-1m.zip",
        archive_prefix="ml-1m/",
        description="MovieLens 1M (GroupLens): 6,040 users, 3,706 movies, 1,000,209 ratings.",
    ),
}


@dataclass(frozen=True)
class ResolvedDataset:
    spec: DatasetSpec
    root: Path  # folder holding the files
    origin: str  # "path" | "cache" | "mirror" | "download"
    checksums: dict[str, str]  # file name -> sha256 as computed

    def file(self, name: str) -> Path | None:
        p = self.root / name
        return p if p.exists() else None


def mirror_dir() -> Path | None:
    """The mirror folder: ``$LLMREC_DATA_MIRROR`` when set, else the first existing ``shared/datasets`` in or beside
    the current folder, then in or beside the llmrec checkout (a source install); None when there is none."""
    if env := os.environ.get("LLMREC_DATA_MIRROR"):
        return Path(env)
    checkout = Path(__file__).resolve().parents[3]  # src/llmrec/data/registry.py -> the repository root
    for base in (Path.cwd(), Path.cwd().parent, checkout, checkout.parent):
        if (base / "shared" / "datasets").is_dir():
            return base / "shared" / "datasets"
    return None


def cache_dir() -> Path:
    return Path(os.environ.get("LLMREC_CACHE_DIR") or Path.home() / ".cache" / "llmrec")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _has_files(spec: DatasetSpec, folder: Path) -> bool:
    return all((folder / f.name).is_file() for f in spec.files if f.required)


def _verify(spec: DatasetSpec, folder: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    for f in spec.files:
        p = folder / f.name
        if not p.is_file():
            continue
        got = sha256_file(p)
        if f.sha256 is not None and got != f.sha256:
            raise ChecksumError(
                f"{p}: SHA-256 mismatch for dataset {spec.name!r} (expected {f.sha256}, got {got}); "
                "the file is corrupted, truncated or a different version. Delete it and provide the original file."
            )
        if f.sha256 is None:
            warnings.warn(f"{p}: no pinned SHA-256 for this file yet; using it unverified (sha256 {got})", stacklevel=3)
        sums[f.name] = got
    return sums


def _download(spec: DatasetSpec, dest: Path, timeout: float = 60.0) -> None:
    """Download into a temporary folder next to dest, verify, then rename into place."""
    with atomic_directory(dest) as tmp:
        if spec.url.endswith(".zip"):
            archive = tmp / "archive.zip"
            with urllib.request.urlopen(spec.url, timeout=timeout) as r, open(archive, "wb") as out:
                shutil.copyfileobj(r, out)
            with zipfile.ZipFile(archive) as zf:
                for f in spec.files:
                    member = spec.archive_prefix + f.name
                    if member in zf.namelist():
                        (tmp / f.name).write_bytes(zf.read(member))
            archive.unlink()
        else:
            for f in spec.files:
                try:
                    with urllib.request.urlopen(spec.url + f.name, timeout=timeout) as r, open(tmp / f.name, "wb") as out:
                        shutil.copyfileobj(r, out)
                except OSError:
                    if f.required:
                        raise
        _verify(spec, tmp)  # a checksum mismatch raises here, before anything replaces dest


def resolve_dataset(name: str, path: str | Path | None = None, *, allow_download: bool = True) -> ResolvedDataset:
    """Find dataset `name` (see the module docstring for the order) and verify its files."""
    if name not in DATASETS:
        raise DatasetNotFoundError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    spec = DATASETS[name]
    tried: list[str] = []
    candidates: list[tuple[str, Path]] = []
    if path is not None:
        p = Path(path)
        candidates.append(("path", p.parent if p.is_file() else p))
    candidates.append(("cache", cache_dir() / name))
    mirror = mirror_dir()
    if mirror is not None:
        candidates.append(("mirror", mirror / name))
    else:
        tried.append("mirror: $LLMREC_DATA_MIRROR is not set and no shared/datasets folder is near")
    for origin, folder in candidates:
        if _has_files(spec, folder):
            return ResolvedDataset(spec, folder, origin, _verify(spec, folder))
        tried.append(f"{origin}: {folder} (missing {', '.join(f.name for f in spec.files if f.required)})")
    if allow_download:
        dest = cache_dir() / name
        try:
            _download(spec, dest)
            return ResolvedDataset(spec, dest, "download", _verify(spec, dest))
        except ChecksumError:
            raise
        except OSError as e:
            tried.append(f"download: {spec.url} ({e.__class__.__name__}: {e})")
    else:
        tried.append("download: disabled")
    raise DatasetNotFoundError(
        f"dataset {name!r} not found. Tried:\n  - " + "\n  - ".join(tried) + "\n"
        f"Provide it with --path DIR, copy its files ({', '.join(f.name for f in spec.files)}) into "
        f"{cache_dir() / name}, or set LLMREC_DATA_MIRROR to a folder containing '{name}/'."
    )
