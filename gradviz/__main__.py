"""The command line: ``python -m gradviz train|eval|train-gan|study|list``.

Examples::

    python -m gradviz train --method standard --epochs 15 --out assets/models
    python -m gradviz train --method pgd --eps 0.3 --epochs 40 --name pgd-linf --out assets/models
    python -m gradviz train --method igd --eps 0.3 --igd-lambda 1 --teacher mnist-5k/standard
    python -m gradviz train --method trades --eps 0.3 --steps 10 --trades-beta 6
    python -m gradviz train --method pag --pag-target nn --pag-lambda 1.5
    python -m gradviz train --method agr --agr-base pgd --eps 0.3 --steps 10 --agr-start-epoch 32 --epochs 40
    python -m gradviz train --method lalpha --lalpha-lambda 0.3 --epochs 15
    python -m gradviz eval mnist-5k/pgd-linf
    python -m gradviz eval mnist-5k/pgd-linf --curve --write
    python -m gradviz train-gan --dataset mnist-5k --epochs 60 --out assets/generators
    python -m gradviz study robustness --models mnist-5k/standard mnist-5k/pgd-linf --n 300 --out runs/
    python -m gradviz study inequality --models mnist-5k/standard mnist-5k/igd --n 200 --method gradient
    python -m gradviz study alignment --models mnist-5k/standard mnist-5k/lalpha --write-cards
    torchrun --nproc_per_node 2 -m gradviz train --method pgd --eps 0.3 --epochs 40 --batch-size 128
    torchrun --nproc_per_node 2 -m gradviz study robustness --models mnist-5k/standard --n-images 1000 --out runs/
    python -m gradviz list
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path

from gradviz.utils import tqdm_progress


def _default_name(config) -> str:
    """The model name after '<dataset>/' when --name is not given: the objective's
    ``default_model_name`` of the resolved ``config`` (e.g. ``pgd-linf``, ``pag-nn``)."""
    from gradviz.training import objective_class

    return objective_class(config.method).default_model_name(config)


def cmd_train(args) -> int:
    from gradviz import zoo
    from gradviz.training import TrainConfig, evaluate, model_card, train
    from gradviz.training.snapshots import snapshot_path

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None}).resolved()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # torchrun: DistributedDataParallel over the ranks (gradviz.training.distributed); the
    # objective is checked before joining; only rank 0 prints, evaluates and writes.
    from gradviz.studies import distributed
    from gradviz.training import distributed as ddp

    ctx = None
    try:
        if distributed.launched():
            ddp.check(config, int(os.environ["WORLD_SIZE"]))
            ctx = distributed.init(args.device, args.dist_timeout)
    except ValueError as err:
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {err}", file=sys.stderr)
        return 2
    rank0 = ctx is None or ctx.is_main
    name = f"{config.dataset}/{args.name or _default_name(config)}"
    out = Path(args.out) if args.out else zoo.user_model_dir()
    path = out / f"{name}.pt"
    snapshots = snapshot_path(path)
    progress, close = tqdm_progress(f"train {name}") if rank0 else (None, lambda: None)
    try:
        model, log = train(config, device=args.device, progress=progress, snapshot_path=snapshots if rank0 else None,
                           distributed=ctx is not None)
    except (ValueError, distributed.DistributedStudyError) as err:  # e.g. a missing IGD teacher or L_alpha generator
        close()
        if distributed.error_line(ctx, err):
            print(distributed.error_line(ctx, err), file=sys.stderr)
        return 2
    close()
    if not rank0:
        return 0
    for entry in log:
        print("  " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items()))
    metrics = {}
    if not args.no_eval:
        progress, close = tqdm_progress(f"evaluate {name}")
        metrics = evaluate(model, config.dataset, limit=args.eval_limit, progress=progress)
        close()
        print(f"clean accuracy {metrics['clean_accuracy']:.4f}, robust accuracy {metrics['robust_accuracy']:.4f} "
              f"under {metrics['attack']}")
    launcher = "python -m gradviz " if ctx is None else (
        f"torchrun --nproc_per_node {os.environ.get('LOCAL_WORLD_SIZE', ctx.world_size)} -m gradviz ")
    card = model_card(config, name=name, log=log, metrics=metrics,
                      command=launcher + " ".join(shlex.quote(a) for a in args.argv),
                      snapshot_path=snapshots, distributed=None if ctx is None else ddp.card_info(config, ctx))
    zoo.save_model(model.cpu(), card, path)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


def cmd_train_gan(args) -> int:
    import time

    from gradviz import zoo
    from gradviz.generative import GENERATOR_ARCH, class_accuracy, save_generator, train_gan, user_generator_dir

    path = (Path(args.out) if args.out else user_generator_dir()) / f"{args.dataset}.pt"
    clf_name = args.classifier or f"{args.dataset}/standard"
    try:
        classifier = zoo.load_model(clf_name, device=args.device)
    except (KeyError, zoo.CheckpointError) as err:
        classifier = None
        print(f"no classifier to measure the generator with: {err}")
    progress, close = tqdm_progress(f"train-gan {args.dataset}")
    start = time.perf_counter()
    options = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_d=args.lr_d, seed=args.seed,
                   z_dim=args.z_dim, width=args.width, ema=args.ema, mode_seeking=args.mode_seeking,
                   aux_weight=args.aux_weight, limit=args.limit)
    generator, _, log = train_gan(args.dataset, device=args.device, classifier=classifier, progress=progress, **options)
    close()
    for entry in log:
        print("  " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items()))
    metrics = {"train_seconds": round(time.perf_counter() - start, 1)}
    if classifier is not None:
        n = args.quality_samples
        metrics.update(class_accuracy=round(class_accuracy(generator, classifier, n_per_class=n, seed=0), 4),
                       classifier=clf_name, n_per_class=n, sample_seed=0,
                       definition="fraction of samples G(z, c), z ~ N(0, I), that the classifier puts in class c")
        print(f"class accuracy of G(z, c) under {clf_name}: {metrics['class_accuracy']:.4f}")
    else:
        metrics.update(class_accuracy=None, note=f"not measured: no classifier {clf_name!r} when it was trained")
    card = zoo.ModelCard(
        name=f"{args.dataset}/generator", dataset=args.dataset, arch=GENERATOR_ARCH, method="cgan-hinge",
        metrics=metrics, training=options, log=log,
        command="python -m gradviz " + " ".join(shlex.quote(a) for a in args.argv),
    )
    save_generator(generator.cpu(), card, path)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


def _norm_eps(text: str) -> tuple[str, float]:
    """``"l2:2"`` -> ("l2", 2.0), for ``eval --also``."""
    norm, _, eps = text.partition(":")
    try:
        value = float(eps)
    except ValueError:
        value = float("nan")
    if norm not in ("linf", "l2") or not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected NORM:EPS with NORM linf or l2 and EPS > 0, got {text!r}")
    return norm, value


def cmd_eval(args) -> int:
    import json

    from gradviz import zoo
    from gradviz.training import evaluate

    model = zoo.load_model(args.model, device=args.device)
    card = zoo.get_card(args.model)
    progress, close = tqdm_progress(f"evaluate {card.name}")
    metrics = evaluate(model, card.dataset, limit=args.limit, progress=progress)
    close()
    if args.also:
        other = []
        for norm, eps in args.also:
            progress, close = tqdm_progress(f"PGD-40 {norm} eps {eps:g} {card.name}")
            attack = dict(norm=norm, eps=eps, steps=40, step_size=2.5 * eps / 40, random_start=True)
            result = evaluate(model, card.dataset, attack=attack, limit=args.limit, progress=progress)
            close()
            other.append({k: result[k] for k in ("robust_accuracy", "attack", "split", "n_images")})
        metrics["other_attacks"] = other
    if args.autoattack:
        metrics["autoattack"] = _autoattack(args, card)
    if args.curve:
        from gradviz.training import robustness_curve

        progress, close = tqdm_progress(f"accuracy vs eps {card.name}")
        metrics["curve"] = robustness_curve(model, card.dataset, limit=args.curve_limit or args.limit,
                                            progress=progress)
        close()
    print(json.dumps(metrics, indent=2))
    if args.write:
        card.metrics = {**card.metrics, **metrics}
        zoo.write_card(card)
    return 0


def _autoattack(args, card) -> dict:
    """``eval --autoattack``: the AutoAttack study (stored, resumable) at the card's
    evaluation norm and eps, on the images ``--limit`` gives; the card entry it makes."""
    from gradviz.studies import autoattack
    from gradviz.training import EVAL_ATTACKS

    attack = EVAL_ATTACKS.get(card.dataset, EVAL_ATTACKS["mnist-5k"])
    progress, close = tqdm_progress(f"AutoAttack {attack['norm']} eps {attack['eps']:g} {card.name}")
    attacks = tuple(a for a in autoattack.STANDARD_ATTACKS if a in args.aa_attacks)
    try:
        res = autoattack.run([args.model], dataset=card.dataset, n=args.limit or None, norm=attack["norm"],
                             eps=float(attack["eps"]), attacks=attacks, pgd_steps=attack["steps"],
                             pgd_step_size=float(attack["step_size"]), device=args.device, progress=progress)
    finally:
        close()
    command = "python -m gradviz " + " ".join(shlex.quote(a) for a in args.argv if a != "--write")
    return {"measured_by": command, **res.card_metrics(res.model_names[0])}


def _curve_point(curve: dict, eps: float):
    """Accuracy of a card's accuracy-vs-eps curve at ``eps`` (None when not on its grid)."""
    for e, a in zip(curve.get("eps_grid", ()), curve.get("accuracy", ())):
        if abs(e - eps) < 1e-9:
            return a
    return None


def _markdown_table(cards) -> str:
    """The README's table of models: the card's clean and robust accuracy (the dataset's
    standard attack), the robust accuracy under AutoAttack (``eval --autoattack``) and, where ``eval --curve`` measured it, the curve's accuracy at
    1/3, 2/3 and 3/3 of the evaluation eps (one attack for the three: nested PGD-40, step
    2.5 eps / 40) and eps50."""
    from gradviz.attacks import format_curve_eps50
    from gradviz.training import EVAL_ATTACKS

    def pct(v):
        return "–" if v is None else f"{100 * v:.1f} %"

    lines = []
    for dataset in sorted({c.dataset for c in cards}):
        e = float(EVAL_ATTACKS[dataset]["eps"]) if dataset in EVAL_ATTACKS else None
        low, mid = (round(e / 3, 6), round(2 * e / 3, 6)) if e else (None, None)
        lines += [f"| {dataset} | method | clean | PGD-40 eps {e:g} | AutoAttack | curve at {low:.3g} | at {mid:.3g} "
                  f"| at {e:g} | eps50 | curve images | AutoAttack images |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in (c for c in cards if c.dataset == dataset):
            m, curve = c.metrics, c.metrics.get("curve") or {}
            aa = m.get("autoattack") or {}
            subset = " (subset)" if (aa.get("attack") or {}).get("version") == "subset" else ""
            e50 = format_curve_eps50(curve, fmt=".3f")
            trained = f" ({c.norm or 'linf'} eps {c.eps:g})" if c.eps else ""
            lines.append(f"| `{c.name}` | {c.method}{trained} | "
                         f"{pct(m.get('clean_accuracy'))} | {pct(m.get('robust_accuracy'))} | "
                         f"{pct(aa.get('robust_accuracy'))}{subset} | "
                         f"{pct(_curve_point(curve, low))} | {pct(_curve_point(curve, mid))} | "
                         f"{pct(_curve_point(curve, e))} | "
                         f"{e50} | "
                         f"{curve.get('n_images', '–')} | {aa.get('n_images', '–')} |")
        lines.append("")
    return "\n".join(lines)


def cmd_list(args) -> int:
    from gradviz import zoo
    from gradviz.attacks import format_curve_eps50

    cards = zoo.list_models(args.dataset)
    if args.markdown:
        print(_markdown_table([c for c in cards if c.shipped or not args.shipped]))
        return 0
    for card in cards:
        if args.shipped and not card.shipped:
            continue
        m = card.metrics
        e50 = format_curve_eps50(m.get("curve"))
        print(f"{card.name:28s} {card.method:10s} eps {card.eps:<5g} clean {m.get('clean_accuracy', float('nan')):.4f} "
              f"robust {m.get('robust_accuracy', float('nan')):.4f}" + (f" eps50 {e50}" if e50 != "–" else "")
              + f"  {'shipped' if card.shipped else card.path}")
    return 0


def _settings_options(parser: argparse.ArgumentParser, settings_class) -> None:
    """One ``--option`` per field of a study's Settings dataclass (types from its annotations)."""
    for f in dataclasses.fields(settings_class):
        kind = str(f.type)
        opt = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        doc = f"(default {default})" if default not in (None, "") else ""
        if "tuple" in kind:
            parser.add_argument(opt, nargs="+", type=float if "float" in kind else str if "str" in kind else int,
                                default=None, help=doc)
        elif kind == "bool":
            parser.add_argument(opt, action=argparse.BooleanOptionalAction, default=None, help=doc)
        else:
            parser.add_argument(opt, type=int if "int" in kind else float if "float" in kind else str, default=None,
                                help=doc)


def _join_torchrun(args, label: str):
    """Under torchrun, join the group (:func:`gradviz.studies.distributed.init`, ``--device``,
    ``--dist-timeout``); a plain run joins nothing. Returns ``(ctx or None, is rank 0,
    progress, close)``: only rank 0 shows a progress bar. Raises ValueError (a bad timeout)."""
    from gradviz.studies import distributed

    ctx = distributed.init(args.device, args.dist_timeout) if distributed.launched() else None
    rank0 = ctx is None or ctx.is_main
    progress, close = tqdm_progress(label) if rank0 else (None, lambda: None)
    return ctx, rank0, progress, close


def _failed(ctx, err: BaseException) -> int:
    """Print ``err`` where this rank should (:func:`gradviz.studies.distributed.error_line`); exit code 2."""
    from gradviz.studies import distributed

    line = distributed.error_line(ctx, err)
    if line:
        print(line, file=sys.stderr)
    return 2


def cmd_study(args) -> int:
    from gradviz.studies import STUDIES, ChunkStore

    module = STUDIES[args.study]
    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(module.Settings)
                if getattr(args, f.name, None) is not None}
    options = {"chunk": args.chunk} if module.STUDY.chunked else {}
    from gradviz.studies import distributed

    try:
        ctx, rank0, progress, close = _join_torchrun(args, f"study {args.study}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        res = module.run(args.models, dataset=args.dataset, split=args.split, n=args.n, device=args.device,
                         progress=progress, store=ChunkStore(args.store) if args.store else None,
                         recompute=args.recompute, **options, **settings)
    except (ValueError, KeyError, distributed.DistributedStudyError) as err:
        close()
        return _failed(ctx, err)
    close()
    if not rank0:
        return 0
    table = res.table()
    print(table.to_string(index=False))
    units = "chunks" if module.STUDY.chunked else "units"
    print(f"{res.n_images} images; {res.computed} {units} computed, {res.loaded} read from the store")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / f"{args.study}.csv", index=False)
        (out / f"{args.study}.npz").write_bytes(res.to_npz())
        print(f"wrote {out / (args.study + '.csv')} and {out / (args.study + '.npz')}")
    if getattr(args, "write_cards", False):
        command = "python -m gradviz " + " ".join(shlex.quote(a) for a in args.argv if a != "--write-cards")
        try:
            written = module.write_card_metrics(res, measured_by=command)
        except (ValueError, KeyError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        for name, path in written.items():
            print(f"wrote metrics[{args.study!r}] of {name} into {path}")
        if not written:
            print("no card written: none of the models was loaded from a checkpoint file")
    return 0


def cmd_report(args) -> int:
    from gradviz import report
    from gradviz.studies import distributed
    from gradviz.viz.export import StaticExportUnavailable

    try:
        ctx, rank0, progress, close = _join_torchrun(args, "report")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # Ranks other than 0 take their share of the studies only; rank 0 draws and writes.
    wanted = tuple(args.only or report.FIGURES)
    include = wanted if rank0 else tuple(f for f in report.STUDY_FIGURES if f in wanted)
    try:
        rep = report.build(args.dataset, device=args.device, progress=progress, include=include)
    except (ValueError, KeyError, distributed.DistributedStudyError) as err:
        close()
        return _failed(ctx, err)
    close()
    if not rank0:
        return 0
    try:
        written = report.write(rep, args.out, formats=tuple(args.formats))
    except StaticExportUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    counts = {v: sum(f.verdict == v for f in rep.findings) for v in report.VERDICTS}
    print(f"{len(rep.findings)} findings: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n))
    for name, why in rep.skipped.items():
        print(f"not drawn: {name} ({why})")
    print(f"wrote {len(written)} files into {args.out} ({rep.seconds:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from gradviz.data import DATASETS
    from gradviz.nets import ARCHITECTURES
    from gradviz.report import FIGURES as report_figures
    from gradviz.studies.autoattack import STANDARD_ATTACKS
    from gradviz.training import METHODS
    from gradviz.training.objectives import all_options

    parser = argparse.ArgumentParser(prog="python -m gradviz", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and write its checkpoint and card")
    t.add_argument("--dataset", default="mnist-5k", choices=sorted(DATASETS))
    t.add_argument("--method", default="standard", choices=METHODS)
    t.add_argument("--arch", default="small-cnn", choices=sorted(ARCHITECTURES))
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (Adam, one-cycle schedule)")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-augment", dest="augment", action="store_false", help="no random translations")
    t.add_argument("--shift", type=int, default=2, help="max random translation in pixels")
    # Each objective's options (TrainConfig fields), from the registry: defaults and help
    # are the objectives' own; None here means "the method's default".
    for option, methods in all_options().values():
        t.add_argument(option.flag, type=option.type, default=None, choices=option.choices or None,
                       help=f"{', '.join(methods)}: {option.help} (default {option.describe_default()})")
    t.add_argument("--monitor", "--monitor-images", dest="monitor", type=int, default=None,  # torchrun takes --monitor
                   help="learning curves: clean (and robust) accuracy after each epoch on the first N test images "
                        "(default 200; 0: none); never used for model selection; under torchrun write "
                        "--monitor-images")
    t.add_argument("--snapshots", type=int, default=None,
                   help="keep the input gradients of K held-out test images before training and after each "
                        "epoch, beside the checkpoint as <name>.snapshots.npz (default 8; 0: none)")
    t.add_argument("--limit", type=int, default=0, help="train on the first N images only (0: all)")
    t.add_argument("--name", default=None, help="model name after '<dataset>/' (default: the method, 'pgd-<norm>' for pgd)")
    t.add_argument("--out", default=None, help="model folder (default: the user model folder; assets/models for shipped ones)")
    t.add_argument("--no-eval", action="store_true", help="skip the clean / robust evaluation on the test split")
    t.add_argument("--eval-limit", type=int, default=0, help="evaluate on the first N test images only (0: all)")
    t.add_argument("--device", default="auto")
    t.add_argument("--dist-timeout", type=float, default=None, metavar="SECONDS",
                   help="under torchrun: how long a rank waits for the others (joining, each step's all-reduce) "
                        "before the run fails (default $GRADVIZ_DIST_TIMEOUT or 1800; above an epoch's monitor "
                        "and snapshot time)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="measure clean and robust accuracy of a model")
    e.add_argument("model", help="zoo name or checkpoint path")
    e.add_argument("--write", action="store_true", help="write the numbers into the model's card")
    e.add_argument("--curve", action="store_true",
                   help="also accuracy vs eps (nested PGD-40 on a grid up to 5/3 of the eval eps) and eps50")
    e.add_argument("--also", type=_norm_eps, action="append", default=[], metavar="NORM:EPS",
                   help="also the robust accuracy under PGD-40 (step 2.5 eps / 40, random start) of that norm "
                        "and radius, e.g. l2:2 (repeatable; stored as metrics['other_attacks'])")
    e.add_argument("--autoattack", action="store_true",
                   help="also the robust accuracy under AutoAttack (pyautoattack, standard version) at the card's "
                        "norm and eps, with PGD on the same images (stored as metrics['autoattack']; resumable)")
    e.add_argument("--aa-attacks", nargs="+", default=list(STANDARD_ATTACKS), choices=STANDARD_ATTACKS,
                   metavar="ATTACK", help="AutoAttack's attacks to run (default: all four, the standard version; "
                                          "a subset is weaker and is recorded as such)")
    e.add_argument("--limit", type=int, default=0, help="evaluate on the first N test images only (0: all)")
    e.add_argument("--curve-limit", type=int, default=0,
                   help="the accuracy-vs-eps curve on the first N test images only (default: as --limit); its "
                        "12 attacks cost 12 times the robust accuracy's")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("report", help="the seed papers' key figures (PNG, PDF) and report.md from the shipped models",
                       description="Runs the studies the figures need (stored results are read, not computed "
                                   "again), draws each seed paper's key figure and writes report.md: gradviz's "
                                   "numbers beside the papers', finding by finding. Also under torchrun.")
    r.add_argument("--out", required=True, help="folder for the figures and report.md (created)")
    r.add_argument("--dataset", default="mnist-5k", choices=sorted(DATASETS))
    r.add_argument("--formats", nargs="+", default=["png", "pdf"], choices=["png", "pdf", "svg"])
    r.add_argument("--only", nargs="+", default=None, choices=report_figures, metavar="FIGURE",
                   help=f"draw only these figures (default all: {', '.join(report_figures)}); the findings are "
                        "always all")
    r.add_argument("--device", default="auto")
    r.add_argument("--dist-timeout", type=float, default=None,
                   metavar="SECONDS", help="under torchrun: how long a rank waits for the others before the run fails "
                        "(default $GRADVIZ_DIST_TIMEOUT or 1800)")
    r.set_defaults(func=cmd_report)

    g = sub.add_parser("train-gan", help="train a class-conditional GAN (residuals, alignment) and write it with its card")
    g.add_argument("--dataset", default="mnist-5k", choices=sorted(DATASETS))
    g.add_argument("--epochs", type=int, default=60)
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of G")
    g.add_argument("--lr-d", type=float, default=4e-4, help="Adam learning rate of D")
    g.add_argument("--z-dim", type=int, default=64, help="latent size")
    g.add_argument("--width", type=int, default=32, help="channels of the middle layers of G and D")
    g.add_argument("--ema", type=float, default=0.999, help="decay of the moving average of G's weights")
    g.add_argument("--mode-seeking", type=float, default=0.2, help="weight of the mode-seeking term (0: off)")
    g.add_argument("--aux-weight", type=float, default=1.0, help="weight of the auxiliary classifier term (0: off)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--limit", type=int, default=0, help="train on the first N images only (0: all)")
    g.add_argument("--classifier", default=None,
                   help="zoo model that measures the samples' class accuracy (default <dataset>/standard)")
    g.add_argument("--quality-samples", type=int, default=500, help="samples per class for the card's class accuracy")
    g.add_argument("--out", default=None, help="folder (default: the user generator folder; assets/generators for shipped ones)")
    g.add_argument("--device", default="auto")
    g.set_defaults(func=cmd_train_gan)

    from gradviz.studies import STUDIES

    st = sub.add_parser("study", help="run a dataset-wide study (stored, resumable) and print its table",
                        description="Run a dataset-wide study over the first N images of a split for each model. "
                                    "Results are kept chunk by chunk under $GRADVIZ_HOME/studies: a killed run "
                                    "resumes where it stopped. Studies: " + "; ".join(
                                        f"{name}: {m.STUDY.summary}" for name, m in STUDIES.items()))
    studies = st.add_subparsers(dest="study", required=True, metavar="NAME")
    for name, module in STUDIES.items():
        study = module.STUDY
        one = studies.add_parser(name, help=study.summary, description=module.__doc__.split("\n\n")[0])
        one.add_argument("--models", nargs="+", required=True, help="zoo names or checkpoint paths")
        one.add_argument("--dataset", default="mnist-5k", choices=sorted(DATASETS))
        if len(study.splits) > 1:
            one.add_argument("--split", default=study.splits[0], choices=study.splits)
            split = "split"
        else:  # e.g. roar_kar: retrains on the training split, scores on the test split
            one.set_defaults(split=study.splits[0])
            split = f"{study.splits[0]} split"
        one.add_argument("--n", "--n-images", dest="n", type=int, default=None,  # torchrun takes --n as its own
                         help=f"the first N images of the {split} (default: all; under torchrun write --n-images)")
        one.add_argument("--device", default="auto")
        one.add_argument("--dist-timeout", type=float, default=None, metavar="SECONDS",
                         help="under torchrun: how long a rank waits for the others before the run fails "
                              "(default $GRADVIZ_DIST_TIMEOUT or 1800; above the slowest unit's time)")
        one.add_argument("--out", default=None, help="write DIR/NAME.csv (the table) and DIR/NAME.npz")
        unit = "chunk" if study.chunked else "unit"
        one.add_argument("--store", default=None,
                         help=f"where the results are kept, one file per stored {unit} "
                              f"(default $GRADVIZ_HOME/studies)")
        one.add_argument("--recompute", action="store_true", help=f"compute every stored {unit} again")
        if study.chunked:
            one.add_argument("--chunk", type=int, default=None,
                             help=f"images per stored chunk (default {study.chunk}; part of the store key)")
        if hasattr(module, "write_card_metrics"):
            one.add_argument("--write-cards", action="store_true",
                             help=f"write each model's numbers into its card as metrics[{name!r}] (models loaded "
                                  f"from checkpoint files; the command is kept as measured_by)")
        _settings_options(one, module.Settings)
        one.set_defaults(func=cmd_study)

    ls = sub.add_parser("list", help="list the models of the zoo")
    ls.add_argument("--dataset", default=None)
    ls.add_argument("--shipped", action="store_true", help="only the shipped models")
    ls.add_argument("--markdown", action="store_true", help="a Markdown table (the README's)")
    ls.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
