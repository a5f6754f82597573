"""Writers of small data sets in the real on-disk formats, shared by the dataset and data_scripts tests.

Not a test module (no ``test_`` prefix); the tests load it by path so it works in any import mode.
"""
from __future__ import annotations

import importlib.util
import io
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def load_script(name: str) -> ModuleType:
    """Import ``data_scripts/<name>.py`` as a module (the folder is not a package)."""
    mod_name = f"_beniful_data_scripts_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, REPO / "data_scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


# ------------------------------------------------------------------------------------------ CIFAR-10


def cifar_pickle(d: dict) -> bytes:
    """Pickle like the official (Python 2, numpy 1) batches: protocol 2, ``numpy.core.multiarray``."""
    raw = pickle.dumps(d, protocol=2)
    return raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def cifar_batch(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """``n`` random images as the N x 3072 rows of a batch (R plane, G plane, B plane) and labels."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    return data, labels


def write_cifar10(root: Path, n: int = 6) -> dict[str, tuple[np.ndarray, list[int]]]:
    """``root/cifar-10-batches-py`` with 5 train batches and a test batch of ``n`` images each."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        data, labels = cifar_batch(n, seed=k)
        label = "testing batch 1 of 1" if name == "test_batch" else f"training batch {k + 1} of 5"
        d = {b"batch_label": label.encode(), b"labels": labels, b"data": data,
             b"filenames": [f"img_{k}_{i}.png".encode() for i in range(n)]}
        (folder / name).write_bytes(cifar_pickle(d))
        written[name] = (data, labels)
    meta = {b"num_cases_per_batch": n, b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer",
                                                       b"dog", b"frog", b"horse", b"ship", b"truck"], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(cifar_pickle(meta))
    (folder / "readme.html").write_text("<html>test copy</html>")
    return written


def tar_gz(src_folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src_folder, arcname=src_folder.name)
    return archive


# ------------------------------------------------------------------------------------ Tiny ImageNet

#: deliberately not sorted: labels follow wnids.txt order, as in the real file
TINY_WNIDS = ["n02124075", "n01443537", "n04067472"]
TINY_COLOURS = {"n02124075": (220, 30, 30), "n01443537": (30, 220, 30), "n04067472": (30, 30, 220)}


def _jpeg(colour: tuple[int, int, int], seed: int, gray: bool = False) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour)[None, None] + rng.integers(-10, 11, size=(64, 64, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB")
    if gray:  # the real set holds some single-channel JPEGs
        im = im.convert("L")
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_tiny_imagenet(root: Path, n_train: int = 3, n_val: int = 2) -> Path:
    """``root/tiny-imagenet-200`` exactly as the zip unpacks: flat ``val/images`` + ``val_annotations.txt``."""
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "test" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("".join(w + "\n" for w in TINY_WNIDS))
    (base / "words.txt").write_text("".join(f"{w}\tthing {i}\n" for i, w in enumerate(TINY_WNIDS)))
    seed = 0
    for w in TINY_WNIDS:
        img_dir = base / "train" / w / "images"
        img_dir.mkdir(parents=True)
        boxes = []
        for i in range(n_train):
            seed += 1
            (img_dir / f"{w}_{i}.JPEG").write_bytes(_jpeg(TINY_COLOURS[w], seed, gray=(i == 0 and w == TINY_WNIDS[0])))
            boxes.append(f"{w}_{i}.JPEG\t0\t0\t63\t63\n")
        (base / "train" / w / f"{w}_boxes.txt").write_text("".join(boxes))
    lines = []
    k = 0
    for i in range(n_val):
        for w in reversed(TINY_WNIDS):  # interleaved classes, like the real annotation file
            seed += 1
            (base / "val" / "images" / f"val_{k}.JPEG").write_bytes(_jpeg(TINY_COLOURS[w], seed))
            lines.append(f"val_{k}.JPEG\t{w}\t1\t2\t60\t61\n")
            k += 1
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    (base / "test" / "images" / "test_0.JPEG").write_bytes(_jpeg((128, 128, 128), 999))
    return base


def zip_folder(src_folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(src_folder.rglob("*")):
            arc = p.relative_to(src_folder.parent).as_posix()
            if p.is_dir():
                zf.writestr(arc + "/", b"")
            else:
                zf.write(p, arc)
    return archive
