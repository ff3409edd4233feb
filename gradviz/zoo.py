"""The model zoo: shipped and user checkpoints with their model cards.

A model is a checkpoint ``<name>.pt`` with a JSON card ``<name>.json`` beside it; names are
``<dataset>/<method>`` (``mnist-5k/pgd-linf``). Shipped models live under
``assets/models/``, a user's under :func:`user_model_dir`. A checkpoint holds only plain
types and tensors, so it loads with ``torch.load(..., weights_only=True)``; anything that
needs more (a pickle carrying code) is refused, never executed.

RobustBench's models are zoo names too, ``robustbench:<dataset>/<threat>/<name>``, from
their local checkpoints (:mod:`gradviz.robustbench_zoo`): :func:`list_models` lists those
present, :func:`load_model` loads them through the robustbench package.

A user's own model comes in through :func:`import_checkpoint`: a state_dict of one of
gradviz's architectures (weights_only) or a TorchScript file (card ``arch`` =
``"torchscript"``; loaded with ``torch.jit.load``, which runs no pickled Python), checked
against the dataset's input shape and class count. :func:`edit_card` and
:func:`delete_model` change a user's models (never the shipped ones).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import nn

# checkpoint files and cards live in gradviz.checkpoints (shared with gradviz.generative); the
# names stay importable from here
from gradviz.checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    ModelCard,
    TorchScriptModel,
    gradviz_home,
    is_torchscript,
    load_torchscript,
    read_card,
    read_checkpoint,
    save_atomic,
)
from gradviz.checkpoints import write_card as _write_card_file
from gradviz.data import DATASETS, dataset_info
from gradviz import robustbench_zoo
from gradviz.nets import ARCHITECTURES, build_model, is_external
from gradviz.utils import resolve_device

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"


def user_model_dir() -> Path:
    """Where a user's own models go: ``$GRADVIZ_HOME/models`` or ``~/.cache/gradviz/models``."""
    return gradviz_home() / "models"


def _read_card(json_path: Path, shipped: bool) -> Optional[ModelCard]:
    try:
        return read_card(json_path, shipped=shipped)
    except CheckpointError:
        return None


def list_models(dataset: Optional[str] = None, *, include_user: bool = True) -> list[ModelCard]:
    """Model cards of the shipped models and, with ``include_user``, the user's and the
    RobustBench checkpoints present locally (:func:`gradviz.robustbench_zoo.list_local`).

    Args:
        dataset: keep only models of this dataset (None: all).

    Returns:
        Cards sorted shipped first, then the user's by name, then RobustBench's by name;
        only cards whose checkpoint exists.
    """
    roots = [(ASSETS_DIR, True)] + ([(user_model_dir(), False)] if include_user else [])
    cards: dict[str, ModelCard] = {}
    for root, shipped in roots:
        if not root.is_dir():
            continue
        for json_path in sorted(root.glob("*/*.json")):
            card = _read_card(json_path, shipped)
            if card is None or not Path(card.path).is_file():
                continue
            if dataset is not None and card.dataset != dataset:
                continue
            cards.setdefault(card.name, card)  # a shipped name wins over a user copy
    ordered = sorted(cards.values(), key=lambda c: (not c.shipped, c.name))
    return ordered + (robustbench_zoo.list_local(dataset) if include_user else [])


def pag_view_models(dataset: str, chosen: Sequence[str]) -> list[str]:
    """The models of the perceptually-aligned-gradients view: ``chosen`` (e.g. the sidebar's),
    then the dataset's l2-trained PGD model and its PAG model when not chosen already
    (``<dataset>/pgd-l2`` and ``<dataset>/pag-cm`` where they exist; else the l2 model of the
    largest eps and the first PAG model by name): robust or aligned models whose gradients are
    not masked show the effect."""
    cards = list_models(dataset)
    l2 = sorted((c for c in cards if c.norm == "l2" and c.method == "pgd"),
                key=lambda c: (c.name != f"{dataset}/pgd-l2", -float(c.eps or 0)))
    pag = sorted((c for c in cards if c.method == "pag"), key=lambda c: c.name != f"{dataset}/pag-cm")
    out = list(chosen)
    for group in (l2, pag):
        if group and group[0].name not in out:
            out.append(group[0].name)
    return out


def get_card(name_or_path: Union[str, Path]) -> ModelCard:
    """The card of a zoo name or of a checkpoint path (its ``.json`` beside it).

    Raises:
        KeyError: no such model.
    """
    # A shipped model's card sits at assets/models/<name>.json: read it alone (the app asks
    # for the cards of its models several times per page run). Any other name: every card.
    direct = ASSETS_DIR / f"{name_or_path}.json"
    if isinstance(name_or_path, str) and "/" in name_or_path and direct.is_file():
        card = _read_card(direct, shipped=True)
        if card is not None and card.name == name_or_path and Path(card.path).is_file():
            return card
    for card in list_models():
        if card.name == str(name_or_path):
            return card
    path = Path(name_or_path)
    if path.suffix == ".pt" and path.with_suffix(".json").is_file():
        card = _read_card(path.with_suffix(".json"), shipped=False)
        if card is not None:
            return card
    raise KeyError(f"no model named {name_or_path!r}; known: {[c.name for c in list_models()]}")


def save_model(model: nn.Module, card: ModelCard, path: Union[str, Path]) -> Path:
    """Write ``model``'s weights to ``path`` (``.pt``) and ``card`` beside it (``.json``).

    The checkpoint holds only a dict of plain values and tensors (weights_only-loadable).
    Returns the checkpoint path.
    """
    path = Path(path).with_suffix(".pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    info = dataset_info(card.dataset)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": card.arch,
        "dataset": card.dataset,
        "input_shape": list(info.shape),
        "num_classes": len(info.classes),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    save_atomic(payload, path, tmp=path.with_suffix(".pt.tmp"))
    _write_card_file(card, path)
    return path


def write_card(card: ModelCard) -> Path:
    """Write ``card`` (e.g. with new metrics) as the JSON beside its checkpoint ``card.path``;
    the checkpoint is left as it is. Returns the JSON path.

    Raises:
        ValueError: the card has no checkpoint path.
    """
    if not card.path:
        raise ValueError(f"the card of {card.name!r} has no checkpoint path")
    _write_card_file(card, Path(card.path))
    return Path(card.path).with_suffix(".json")


def _build(arch: str, dataset: str, mean=None, std=None) -> nn.Module:
    info = dataset_info(dataset)
    return build_model(arch, channels=info.channels, num_classes=len(info.classes), size=info.size, mean=mean, std=std)


def _load_state(model: nn.Module, state: dict, what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(f"{what} does not fit the architecture: {first}") from err


def load_model(
    name_or_path: Union[str, Path],
    device: Union[str, torch.device] = "cpu",
    *,
    arch: Optional[str] = None,
    dataset: Optional[str] = None,
) -> nn.Module:
    """Load a zoo model by name, or a checkpoint file by path, in eval mode.

    Args:
        name_or_path: a zoo name (``"mnist-5k/pgd-linf"``, see :func:`list_models`), a
            RobustBench name (``"robustbench:cifar10/Linf/Standard"``, from its local
            checkpoint; :mod:`gradviz.robustbench_zoo`), or a
            path to a ``.pt`` file: a gradviz checkpoint, or a bare state_dict of one of
            gradviz's architectures (``arch``/``dataset`` say which; when absent, every known
            architecture and dataset shape is tried and the one that fits exactly is used).
            A model whose card (or ``arch``) says ``"torchscript"`` is loaded with
            ``torch.jit.load`` on the CPU and wrapped in :class:`TorchScriptModel`.
        device: ``"cpu"`` (default), ``"cuda"`` or ``"auto"``.

    Returns:
        The model, in eval mode, parameters with ``requires_grad=False`` (a read-only model
        for attribution and attacks; training code builds its own).

    Raises:
        KeyError: neither a known name nor an existing file.
        CheckpointError: unsafe, truncated or unreadable file; weights that fit no
            architecture, or not the one the card names; a RobustBench name whose checkpoint
            is not in its model directory (the path to put it at) or without the robustbench
            package (:func:`gradviz.robustbench_zoo.load`).
    """
    if robustbench_zoo.is_robustbench_name(name_or_path):
        return robustbench_zoo.load(str(name_or_path), device)
    path = Path(name_or_path)
    card = None
    if not path.is_file():
        card = get_card(name_or_path)  # raises KeyError
        path = Path(card.path)
    elif path.with_suffix(".json").is_file():
        card = _read_card(path.with_suffix(".json"), shipped=False)
    if (arch or (card.arch if card else None)) == TORCHSCRIPT:
        model = load_torchscript(path, path.name)
        model.eval().requires_grad_(False)
        model.gradviz_info = {"arch": TORCHSCRIPT, "dataset": dataset or (card.dataset if card else None),
                              "path": str(path), "name": card.name if card else path.stem}
        return model.to(resolve_device(device))
    payload = read_checkpoint(path)
    state = payload["state_dict"]
    arch = arch or payload.get("arch") or (card.arch if card else None)
    dataset = dataset or payload.get("dataset") or (card.dataset if card else None)
    if arch is not None and dataset is not None:
        model = _build(arch, dataset)
        _load_state(model, state, path.name)
    else:
        model = _match_architecture(state, arch, dataset, path.name)
        arch, dataset = model.gradviz_info["arch"], model.gradviz_info["dataset"]
    model.eval().requires_grad_(False)
    model.gradviz_info = {"arch": arch, "dataset": dataset, "path": str(path), "name": card.name if card else path.stem}
    return model.to(resolve_device(device))


def _match_architecture(state: dict, arch: Optional[str], dataset: Optional[str], what: str) -> nn.Module:
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for a in [arch] if arch else sorted(ARCHITECTURES):
        for d in [dataset] if dataset else [d for d in DATASETS if DATASETS[d].has_splits]:
            model = _build(a, d)
            if {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes:
                _load_state(model, state, what)
                model.gradviz_info = {"arch": a, "dataset": d}
                return model
    raise CheckpointError(
        f"{what} is a state_dict of no gradviz architecture ({sorted(ARCHITECTURES)}) for the "
        f"known datasets' input shapes and class counts"
    )


# ----------------------------------------------------------------- TorchScript, import, edit

#: The card ``arch`` of an imported TorchScript model.
TORCHSCRIPT = "torchscript"
#: Largest checkpoint :func:`import_checkpoint` accepts, in bytes.
MAX_IMPORT_BYTES = 512 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_model_name(dataset: str, name: str, overwrite: bool = False) -> str:
    """``<dataset>/<name>`` for a new user model, after checking ``name``.

    Raises:
        ValueError: not 1-64 letters, digits, ``.``, ``_``, ``-`` (starting with a letter or
            digit); a shipped model's name; an existing user model's name (unless
            ``overwrite``).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
                         "letter or digit (it becomes the file name)")
    full = f"{dataset}/{name}"
    if (ASSETS_DIR / dataset / f"{name}.pt").exists():
        raise ValueError(f"{full} is a shipped model's name: choose another name")
    if not overwrite and (user_model_dir() / dataset / f"{name}.pt").exists():
        raise ValueError(f"you already have a model named {full}: choose another name or allow overwriting")
    return full


def _read_source(source, filename: Optional[str]) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), filename or "the uploaded file"
    elif isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise CheckpointError(f"no checkpoint file at {path}")
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise CheckpointError(f"{path.name} is larger than {MAX_IMPORT_BYTES // 2**20} MiB")
        data, label = path.read_bytes(), path.name
    elif hasattr(source, "getvalue") or hasattr(source, "read"):  # an upload (Streamlit's UploadedFile)
        data = source.getvalue() if hasattr(source, "getvalue") else source.read()
        label = filename or getattr(source, "name", None) or "the uploaded file"
    else:
        raise TypeError(f"source must be a path, bytes or a file object, not {type(source).__name__}")
    if len(data) > MAX_IMPORT_BYTES:
        raise CheckpointError(f"{label} is larger than {MAX_IMPORT_BYTES // 2**20} MiB")
    if not data:
        raise CheckpointError(f"{label} is empty")
    return data, label


def _fits(arch: str, dataset: str, state: dict) -> bool:
    expected = _build(arch, dataset).state_dict()
    return set(expected) == set(state) and all(tuple(state[k].shape) == tuple(v.shape) for k, v in expected.items())


def _mismatch(expected: dict, state: dict, arch: str, dataset: str) -> Optional[str]:
    """Why ``state`` does not load into a model whose state_dict is ``expected`` (None: it
    does): other keys, another class count, another input shape."""
    info = dataset_info(dataset)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        return f"it is not a {arch} state_dict (missing {missing[:3]}, unexpected {unexpected[:3]})"
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
             if tuple(state[k].shape) != tuple(v.shape)]
    if not wrong:
        return None
    last = [k for k, v in expected.items() if k.endswith("weight") and v.ndim == 2][-1:]
    if last and tuple(state[last[0]].shape)[0] != tuple(expected[last[0]].shape)[0]:
        return (f"it predicts {state[last[0]].shape[0]} classes, {dataset} has {len(info.classes)} "
                f"({last[0]}: {tuple(state[last[0]].shape)} in the file, {tuple(expected[last[0]].shape)} expected)")
    k, got, want = wrong[0]
    return (f"it was made for another input shape than {dataset}'s {' x '.join(str(d) for d in info.shape)} "
            f"(channels x height x width): {k} is {got} in the file, {want} expected for {arch}")


def _fit_state_dict(state: dict, dataset: str, arch: Optional[str], what: str,
                    mean=None, std=None) -> tuple[nn.Module, str]:
    """Build the architecture for ``dataset`` and load ``state`` into it, or explain why not.
    A timm / torchvision architecture is built with the normalisation ``mean``, ``std`` and
    ``state`` loaded into its network (a DataParallel ``module.`` prefix is dropped)."""
    if arch is not None and is_external(arch):
        try:
            model = _build(arch, dataset, mean, std)
        except ImportError as err:
            raise CheckpointError(str(err)) from err
        if state and all(k.startswith("module.") for k in state):
            state = {k[len("module."):]: v for k, v in state.items()}
        problem = _mismatch(model.net.state_dict(), state, arch, dataset)
        if problem:
            raise CheckpointError(f"{what} does not fit {dataset}: {problem}")
        _load_state(model.net, state, what)
        return model, arch
    if arch is not None and arch not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {arch!r}: gradviz has {sorted(ARCHITECTURES)}, 'timm:<name>', "
                              "'torchvision:<name>' (or 'torchscript')")
    problems = []
    for a in [arch] if arch else sorted(ARCHITECTURES):
        model = _build(a, dataset)
        problem = _mismatch(model.state_dict(), state, a, dataset)
        if problem is None:
            _load_state(model, state, what)
            return model, a
        problems.append(problem)
        other = [d for d in DATASETS if d != dataset and DATASETS[d].has_splits and _fits(a, d, state)]
        if other and not problem.startswith("it is not"):
            o = dataset_info(other[0])
            problems[-1] += (f"; it fits {a} for {other[0]} ({' x '.join(str(d) for d in o.shape)}, "
                             f"{len(o.classes)} classes)")
    raise CheckpointError(f"{what} does not fit {dataset}: " + "; ".join(problems))


def _check_outputs(model: nn.Module, dataset: str, what: str) -> None:
    """Run ``model`` on a dummy batch of the dataset's input: logits (2, K), finite, with an
    input gradient."""
    info = dataset_info(dataset)
    x = torch.rand(2, *info.shape, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    try:
        with torch.enable_grad():
            out = model(x)
            if not isinstance(out, torch.Tensor):
                raise CheckpointError(f"{what} returns a {type(out).__name__}, not a tensor of logits")
            if tuple(out.shape) != (2, len(info.classes)):
                raise CheckpointError(
                    f"{what} returns shape {tuple(out.shape)} for a batch of 2 {dataset} images "
                    f"(2 x {' x '.join(str(d) for d in info.shape)}); gradviz needs logits (2, {len(info.classes)}): "
                    f"one score per class of {dataset}"
                )
            if not torch.isfinite(out).all():
                raise CheckpointError(f"{what} returns NaN or inf on {dataset} images")
            (grad,) = torch.autograd.grad(out.sum(), x)
    except CheckpointError:
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{what} does not run on {dataset}'s input (2 x "
                              f"{' x '.join(str(d) for d in info.shape)}, values in [0, 1]): {first}") from err
    if grad is None or not torch.isfinite(grad).all():
        raise CheckpointError(f"{what} gives no finite input gradient, which gradviz is about")


def import_checkpoint(
    source,
    *,
    dataset: str,
    name: str,
    method: str = "unknown",
    eps: float = 0.0,
    norm: Optional[str] = None,
    arch: Optional[str] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    filename: Optional[str] = None,
    overwrite: bool = False,
    measure: bool = True,
) -> ModelCard:
    """Bring your own classifier: check a checkpoint against a dataset and save it, with a
    card, into the user's model folder (:func:`user_model_dir`; never ``assets/``).

    Accepted: a state_dict of one of gradviz's architectures (``gradviz.nets``; bare, or
    under a ``"state_dict"`` key, or a gradviz checkpoint), or of a timm or torchvision
    architecture named by ``arch`` (``"timm:resnet18"``, ``"torchvision:resnet18"``: built
    without pretrained weights for the dataset's channels and classes, and wrapped with the
    ``mean``/``std`` normalisation so that it takes [0, 1] input), read with
    ``torch.load(weights_only=True)`` (a pickle that needs code is refused, nothing runs);
    or a TorchScript file, read with ``torch.jit.load`` on the CPU (it holds TorchScript,
    not pickled Python; its forward runs when checked). Either must take the dataset's
    images (N, C, H, W) in [0, 1] and return logits (N, K): checked on a dummy batch of 2,
    with an input gradient. A state_dict is stored as a gradviz checkpoint, a TorchScript
    file as it is (card ``arch`` = ``"torchscript"``).

    Args:
        source: a path, the file's bytes, or a file object (a Streamlit upload).
        dataset: the dataset it classifies (a key of ``gradviz.data.DATASETS``).
        name: the model name after ``<dataset>/`` (letters, digits, ``.``, ``_``, ``-``).
        method, eps, norm: what the card says about its training (the user's word; eps in
            [0, 1] pixel units; norm default ``"linf"`` when eps > 0).
        arch: ``None`` (detect among gradviz's), a gradviz architecture, ``"timm:<name>"``,
            ``"torchvision:<name>"`` (never detected: say which), or ``"torchscript"``.
        mean, std: for timm / torchvision architectures, the normalisation the network was
            trained with, per channel on the [0, 1] scale (e.g. ImageNet's (0.485, 0.456,
            0.406) and (0.229, 0.224, 0.225)); 1 value or one per channel; default 0 and 1
            (the network takes [0, 1] input as it is). Stored in the checkpoint and the card.
        filename: the name shown in messages for bytes / uploads.
        overwrite: replace an existing user model of that name.
        measure: measure the clean accuracy on the test split for the card (when the
            dataset is available locally).

    Returns:
        The saved :class:`ModelCard` (``path`` set).

    Raises:
        CheckpointError: unreadable, unsafe (code in the pickle), too large, or not fitting
            the dataset: wrong input shape, wrong class count, not a gradviz architecture,
            a TorchScript module that fails on the input, an unknown timm / torchvision
            name, timm not installed; the message says which.
        ValueError: unknown dataset; a bad, shipped or existing name; eps < 0; mean/std
            of the wrong length or std <= 0.
    """
    dataset_info(dataset)  # ValueError for an unknown dataset
    full = check_model_name(dataset, name, overwrite)
    eps = float(eps)
    if not (eps >= 0 and eps != float("inf")):
        raise ValueError(f"eps must be a finite number >= 0 ([0, 1] pixel units), got {eps}")
    data, label = _read_source(source, filename)
    with tempfile.TemporaryDirectory(prefix="gradviz-import-") as tmp:
        tmp_path = Path(tmp) / (Path(label).name if _NAME.fullmatch(Path(label).name or "") else "checkpoint.pt")
        tmp_path.write_bytes(data)
        script = is_torchscript(tmp_path)
        if arch == TORCHSCRIPT and not script:
            raise CheckpointError(f"{label} is not a TorchScript file (torch.jit.save writes those)")
        if script:
            model, kind = load_torchscript(tmp_path, label), TORCHSCRIPT
        else:
            payload = read_checkpoint(tmp_path)
            try:
                model, kind = _fit_state_dict(payload["state_dict"], dataset, arch, label, mean, std)
            except ValueError as err:  # an unknown timm / torchvision name, bad mean / std
                if isinstance(err, CheckpointError) or not is_external(arch or ""):
                    raise
                raise CheckpointError(f"{label} cannot be built as {arch}: {err}") from err
    model.eval().requires_grad_(False)
    _check_outputs(model, dataset, label)
    metrics: dict = {}
    if measure:
        metrics = _measure_clean(model, dataset)
    card = ModelCard(
        name=full, dataset=dataset, arch=kind, method=str(method or "unknown"), eps=eps,
        norm=(norm or "linf") if eps > 0 else None, metrics=metrics,
        training={"source": "imported", "file": label, "sha256": hashlib.sha256(data).hexdigest(),
                  "format": "torchscript" if kind == TORCHSCRIPT else "state_dict",
                  **({"normalization": {"mean": model.normalize.mean.flatten().tolist(),
                                        "std": model.normalize.std.flatten().tolist()}} if is_external(kind) else {})},
        command="",
    )
    path = user_model_dir() / dataset / f"{name}.pt"
    if kind == TORCHSCRIPT:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".pt.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        _write_card_file(card, path)
    else:
        save_model(model, card, path)
    return card


def _measure_clean(model: nn.Module, dataset: str) -> dict:
    from gradviz.attacks import clean_accuracy
    from gradviz.data import load_dataset

    try:
        test = load_dataset(dataset, "test")
    except (FileNotFoundError, OSError, ValueError):
        return {"note": f"not measured: the {dataset} test split is not available here"}
    return {"clean_accuracy": round(clean_accuracy(model, test.x, test.y), 4), "split": "test", "n_images": len(test)}


def _user_card(name: str) -> ModelCard:
    card = get_card(name)  # KeyError
    if card.shipped:
        raise ValueError(f"{name} is a shipped model: it cannot be changed or deleted (copy it first)")
    if robustbench_zoo.is_robustbench_name(card.name):
        raise ValueError(f"{name} is RobustBench's: its name and file follow RobustBench's model directory "
                         f"({card.path}); change or delete the file there")
    return card


def edit_card(name: str, *, new_name: Optional[str] = None, method: Optional[str] = None,
              eps: Optional[float] = None, norm: Optional[str] = None) -> ModelCard:
    """Change a user model's card: its name (``new_name``, after ``<dataset>/``: the files are
    renamed), method, eps and norm (None: unchanged). Shipped models are refused.

    Raises:
        KeyError: no such model. ValueError: a shipped model; a bad or taken new name; eps < 0.
    """
    card = _user_card(name)
    path = Path(card.path)
    if method is not None:
        card.method = str(method)
    if eps is not None:
        eps = float(eps)
        if not (eps >= 0 and eps != float("inf")):
            raise ValueError(f"eps must be a finite number >= 0 ([0, 1] pixel units), got {eps}")
        card.eps = eps
        card.norm = (norm or card.norm or "linf") if eps > 0 else None
    elif norm is not None:
        card.norm = norm
    if new_name is not None and f"{card.dataset}/{new_name}" != card.name:
        card.name = check_model_name(card.dataset, new_name, overwrite=False)
        new_path = path.parent / f"{new_name}.pt"
        os.replace(path, new_path)
        if snapshot_path(path).is_file():
            os.replace(snapshot_path(path), snapshot_path(new_path))
        path.with_suffix(".json").unlink()
        path = new_path
    _write_card_file(card, path)
    return card


def delete_model(name: str) -> None:
    """Delete a user model (checkpoint, card and training snapshots). Shipped models are
    refused (ValueError); KeyError for an unknown name."""
    card = _user_card(name)
    path = Path(card.path)
    path.with_suffix(".json").unlink(missing_ok=True)
    snapshot_path(path).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def snapshot_path(checkpoint: Union[str, Path]) -> Path:
    """The training snapshots beside a checkpoint (:mod:`gradviz.training.snapshots`):
    ``<dir>/<name>.pt`` -> ``<dir>/<name>.snapshots.npz``."""
    checkpoint = Path(checkpoint)
    name = checkpoint.name[:-3] if checkpoint.name.endswith(".pt") else checkpoint.name
    return checkpoint.with_name(name + ".snapshots.npz")


def card_summary(card: ModelCard) -> dict:
    """One row of the model table: name, dataset, arch, method, eps, norm, clean and robust
    accuracy (percent, None if not measured), the attack, the robust accuracy under AutoAttack
    and its attack (``eval --autoattack``; None / "" if not measured), eps50 (from a stored curve, None
    otherwise), epochs, where it comes from."""
    m = card.metrics or {}
    attack = m.get("attack") or {}
    aa = m.get("autoattack") or {}
    curve = m.get("curve") or {}
    epochs = (card.training or {}).get("epochs")
    return {
        "name": card.name,
        "dataset": card.dataset,
        "arch": card.arch,
        "method": card.method + (f" ({card.training['agr_base']})" if card.method == "agr"
                                 and (card.training or {}).get("agr_base") else ""),
        "eps": card.eps,
        "norm": card.norm,
        "clean %": round(100 * m["clean_accuracy"], 1) if m.get("clean_accuracy") is not None else None,
        "robust %": round(100 * m["robust_accuracy"], 1) if m.get("robust_accuracy") is not None else None,
        "attack": (f"PGD-{attack['steps']} {attack.get('norm', '')} eps {attack['eps']:g}"
                   if "steps" in attack and "eps" in attack else ""),
        "AutoAttack %": round(100 * aa["robust_accuracy"], 1) if aa.get("robust_accuracy") is not None else None,
        "AutoAttack": (f"{aa['attack'].get('version', '')} {aa['attack'].get('norm', '')} eps {aa['attack']['eps']:g}, "
                       f"{aa.get('n_images')} images" if "eps" in (aa.get("attack") or {}) else ""),
        "eps50": curve.get("eps50"),
        "epochs": epochs,
        "source": "shipped" if card.shipped else "RobustBench" if card.arch == "robustbench" else "yours",
    }
