"""fastai v2's default recipe on an image folder, as a command: the baseline of ``vs_fastai.py``.

Run by the fastai venv's interpreter (never learnkit's)::

    /work/fastai-venv/bin/python bench/fastai_side.py DATA --arch resnet18 --size 32 --bs 64 \
        --epochs 5 --lr 1e-2 --seed 0 --path RUN

``ImageDataLoaders.from_folder`` (train/ and valid/ folders, ``Resize(size)``, no batch
augmentation: fastai's default), ``vision_learner(..., pretrained=False, metrics=accuracy)``,
``fit_one_cycle(epochs, lr)``, then ``learn.save`` (the checkpoint). Prints one JSON line with the
final accuracy.
"""

from __future__ import annotations

import argparse
import json

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--path", default="fastai_run")
    parser.add_argument(
        "--normalize", choices=["none", "imagenet"], default="none",
        help="none: fastai's default when not pretrained; imagenet: Normalize(imagenet_stats) as learnkit",
    )  # fmt: skip
    args = parser.parse_args()

    from fastai.vision.all import (
        ImageDataLoaders,
        Normalize,
        Resize,
        accuracy,
        imagenet_stats,
        models,
        set_seed,
        vision_learner,
    )

    set_seed(args.seed, reproducible=True)
    dls = ImageDataLoaders.from_folder(
        args.data,
        train="train",
        valid="valid",
        bs=args.bs,
        item_tfms=Resize(args.size),
        batch_tfms=[Normalize.from_stats(*imagenet_stats)] if args.normalize == "imagenet" else None,
    )
    learn = vision_learner(
        dls, getattr(models, args.arch), pretrained=False, metrics=accuracy, path=args.path
    )
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(args.epochs, args.lr)
    learn.save("last")
    loss, acc = learn.validate()
    print(json.dumps({"accuracy": float(acc), "valid_loss": float(loss)}))
