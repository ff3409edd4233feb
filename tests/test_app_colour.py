"""Colour on every page (issue 15): AppTest runs of the app on a fake CIFAR-10 written in
torchvision's on-disk format into a temporary GRADVIZ_DATA, with a tiny random 3-channel
small-cnn in the user's zoo and, when the robustbench package is installed, a RobustBench
architecture with random weights in a temporary model_dir, chosen by name in the sidebar."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from gradviz import zoo
from gradviz.checkpoints import ModelCard
from gradviz.nets import build_model
from tests.helpers import make_cifar10_like, plotly_image

TIMEOUT = 120
APP = str(Path(__file__).resolve().parent.parent / "app.py")
TINY = "cifar10/tiny"


@pytest.fixture
def cifar_home(tmp_path, monkeypatch):
    """GRADVIZ_HOME with cifar10/tiny (a random small-cnn), GRADVIZ_DATA with a 40 + 20 image
    CIFAR-10 in torchvision's layout (its md5 check passes files that exist)."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setenv("GRADVIZ_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GRADVIZ_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    written = make_cifar10_like(tmp_path / "data", n_per_batch=20)
    torch.manual_seed(0)
    model = build_model("small-cnn", channels=3, num_classes=10, size=32).eval()
    zoo.save_model(model, ModelCard(name=TINY, dataset="cifar10", arch="small-cnn", method="standard"),
                   zoo.user_model_dir() / "cifar10" / "tiny.pt")
    return written


def app_on(page: str, models: list[str]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["gv_dataset"] = "cifar10"
    at.session_state["gv_models::cifar10"] = models
    at.run()
    if page != "pages/gradients.py":
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> dict[str, dict]:
    out = {}
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        title = (spec["layout"].get("title") or {}).get("text", "")
        out[title] = spec
    return out


def png(colour, size=(48, 40), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_gradients_page_draws_rgb_panels_on_cifar10_from_disk(cifar_home):
    at = app_on("pages/gradients.py", [TINY])
    assert at.sidebar.selectbox(key="gv_dataset").value == "cifar10"
    assert not at.error, [e.value for e in at.error]
    (spec,) = charts(at).values()
    images = [t for t in spec["data"] if t["type"] == "image"]
    heat = [t for t in spec["data"] if t["type"] == "heatmap"]
    assert len(images) == 8 and len(heat) == 8  # rows 0-7: the RGB image, then tiny's map
    images_written, _ = cifar_home["test"]
    # the first test image, pixel for pixel in RGB (H, W, 3), however plotly ships it
    np.testing.assert_array_equal(plotly_image(images[0]), images_written[0].transpose(1, 2, 0))
    caption = " ".join(c.value for c in at.main.caption)
    assert "reduced over channels (sum)" in caption
    # the reduction rule is a choice, and an L2 norm gives a map >= 0 everywhere
    at.selectbox(key="grad_reduction").set_value("l2").run()
    assert not at.exception and "reduced over channels (l2)" in " ".join(c.value for c in at.main.caption)


def test_uploads_are_read_as_rgb_at_the_models_input(cifar_home):
    at = app_on("pages/gradients.py", [TINY])
    at.radio(key="grad_mode").set_value("upload").run()
    assert not at.exception and not at.get("plotly_chart")
    uploader = at.file_uploader(key="grad_upload")
    uploader.upload("orange.png", png((240, 120, 10), size=(48, 40)), "image/png")  # RGB, not 32 x 32
    uploader.upload("grey.png", png(90, size=(32, 32), mode="L"), "image/png")  # one channel
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    infos = [i.value for i in at.info]
    # what was done to each file is said, with the model's input
    assert any("orange.png" in i and "resized from 48 x 40 to 32 x 32 pixels" in i
               and "32 x 32 RGB images" in i for i in infos), infos
    assert any("grey.png" in i and "converted from L to RGB" in i for i in infos), infos
    assert not any("grey.png" in i and "inverted" in i for i in infos), infos  # colour models: never inverted
    (spec,) = charts(at).values()
    images = [plotly_image(t) for t in spec["data"] if t["type"] == "image"]
    assert len(images) == 2 and len([t for t in spec["data"] if t["type"] == "heatmap"]) == 2
    orange, grey = images
    assert orange.shape == grey.shape == (32, 32, 3)
    # a plain colour stays that colour through the resize; grey is grey in all three channels
    assert np.abs(orange.astype(int) - (240, 120, 10)).max() <= 1, orange[0, 0]
    assert (grey == 90).all(), grey[0, 0]
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert titles[0].startswith("orange.png") and titles[2].startswith("grey.png"), titles


def test_attack_page_on_colour_images(cifar_home):
    at = app_on("pages/attack.py", [TINY])
    assert not at.error, [e.value for e in at.error]
    specs = charts(at)
    assert any(t["type"] == "image" for s in specs.values() for t in s["data"]), list(specs)
    # the perceptually-aligned-gradients view: an RGB image per target class
    at.radio(key="atk_pag_mode").set_value("fixed").run()
    at.slider(key="atk_pag_steps").set_value(5)
    at.run()
    at.button(key="atk_pag_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    pag = next(s for t, s in charts(at).items() if t.startswith("Targeted l2 PGD"))
    assert [t["type"] for t in pag["data"]] == ["image"] * 11  # x, then one image per class


def test_inequality_page_on_colour_images(cifar_home):
    at = app_on("pages/inequality.py", [TINY])
    assert not at.error, [e.value for e in at.error]
    # IG's zeros on black pixels: said, with this photo's share, and not MNIST's consequence
    (note,) = [i.value for i in at.info if "exactly 0 on black pixels" in i.value]
    assert "0 % of this image's pixels are black" in note and "Too few for that to dominate" in note, note
    at.slider(key="ineq_n").set_value(10)
    at.button(key="ineq_go").click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_alignment_page_on_colour_images(cifar_home, tmp_path):
    from gradviz import generative

    G = generative.Generator(z_dim=8, num_classes=10, channels=3, size=32, width=8).eval()
    card = ModelCard(name="cifar10/generator", dataset="cifar10", arch="cgan-dcgan", method="cgan",
                     command="test fixture: untrained")
    generative.save_generator(G, card, tmp_path / "home" / "generators" / "cifar10.pt")
    at = app_on("pages/alignment.py", [TINY])
    at.radio(key="align_steps").set_value("custom").run()
    at.number_input(key="align_s1").set_value(5)
    at.number_input(key="align_s2").set_value(5).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    spec = next(s for t, s in charts(at).items() if t.startswith("GAN residual"))
    assert {t["type"] for t in spec["data"]} >= {"image", "heatmap"}  # x and x + dx_hat in RGB, maps reduced


@pytest.mark.parametrize("page", ["pages/models.py", "pages/tradeoff.py"])
def test_other_pages_open_on_cifar10(cifar_home, page):
    at = app_on(page, [TINY])
    assert not at.error, [e.value for e in at.error]


def test_robustbench_model_by_name_in_the_sidebar_draws_gradients(cifar_home, tmp_path, monkeypatch):
    from tests.test_robustbench import NAME, SMALL, rb_architecture

    net = rb_architecture()  # skips without robustbench
    monkeypatch.setenv("GRADVIZ_ROBUSTBENCH", str(tmp_path / "rb"))
    path = tmp_path / "rb" / "cifar10" / "Linf" / f"{SMALL}.pt"
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    at = app_on("pages/gradients.py", [NAME, TINY])
    assert NAME in at.sidebar.multiselect(key="gv_models::cifar10").options or \
        any(NAME in o or SMALL in o for o in at.sidebar.multiselect(key="gv_models::cifar10").options)
    assert not at.error, [e.value for e in at.error]
    (spec,) = charts(at).values()
    assert len([t for t in spec["data"] if t["type"] == "heatmap"]) == 2 * 8  # two models, 8 images
    titles = " ".join(a["text"] for a in spec["layout"]["annotations"])
    assert SMALL in titles and "tiny" in titles


def test_an_image_folder_at_224_for_an_imagenet_model(cifar_home, tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=1000).eval()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    zoo.import_checkpoint(buf.getvalue(), dataset="imagenet", name="r18", arch="torchvision:resnet18",
                          mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), measure=False)
    root = tmp_path / "imagenet-val"
    for folder, colour in (("tench", (200, 30, 30)), ("goldfish", (240, 160, 0)), ("2", (40, 40, 200))):
        (root / folder).mkdir(parents=True)
        Image.new("RGB", (300, 260), colour).save(root / folder / "a.png")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["gv_dataset"] = "imagenet"
    at.session_state["gv_models::imagenet"] = ["imagenet/r18"]
    at.run()
    # without a folder: the page says where the images must come from
    assert any("load_image_folder" in e.value for e in at.error), [e.value for e in at.error]
    at.sidebar.text_input(key="gv_folder::imagenet").set_value(str(root)).run()
    assert not at.exception
    at.text_input(key="grad_indices").set_value("0-2").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (spec,) = charts(at).values()
    images = [plotly_image(t) for t in spec["data"] if t["type"] == "image"]
    assert len(images) == 3 and all(img.shape == (224, 224, 3) for img in images), [i.shape for i in images]
    # the 300 x 260 folder images, resized: each still its plain colour, in RGB
    shown = sorted(tuple(int(v) for v in img[112, 112]) for img in images)
    assert shown == sorted([(200, 30, 30), (240, 160, 0), (40, 40, 200)]), shown
    assert all((img == img[112, 112]).all() for img in images)
    titles = " ".join(a["text"] for a in spec["layout"]["annotations"])
    assert "a.png (#0)" in titles and "tench" in titles
    assert any("resized to 224 x 224 pixels (3 of 3 images)" in c.value for c in at.caption)


def test_bring_your_own_torchvision_checkpoint_in_the_models_page(cifar_home, tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    at = app_on("pages/models.py", [TINY])
    at.file_uploader(key="models_import_file").upload("r18.pt", buf.getvalue(), "application/octet-stream")
    at.run()
    at.selectbox(key="models_import_dataset").set_value("cifar10").run()
    at.selectbox(key="models_import_arch").set_value("torchvision:").run()
    assert at.text_input(key="models_import_mean::cifar10").value == "0.4914, 0.4822, 0.4465"
    at.text_input(key="models_import_name").set_value("r18")
    at.button(key="models_import_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Imported cifar10/r18 (torchvision:resnet18)" in s.value for s in at.success)
    model = zoo.load_model("cifar10/r18")
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - mean) / std))
    # a mean that is no list of numbers: said, nothing imported
    at.text_input(key="models_import_mean::cifar10").set_value("half")
    at.text_input(key="models_import_name").set_value("r18b")
    at.button(key="models_import_go").click().run()
    assert any("the mean must be numbers" in e.value for e in at.error)
    assert "cifar10/r18b" not in [c.name for c in zoo.list_models("cifar10")]


def test_eps_in_the_sidebar_reads_as_people_write_it():
    from gradviz.ui.state import eps_text

    assert [eps_text(e) for e in (0.3, 0.2, 0.5, 2.0)] == ["0.3", "0.2", "0.5", "2"]  # MNIST's, l2's
    assert [eps_text(8 / 255), eps_text(4 / 255)] == ["8/255", "4/255"]  # RobustBench's l_inf, not 0.0313725
    assert eps_text(0.0123456) == "0.0123"
