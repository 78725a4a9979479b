"""Using a trained run: re-evaluate it from the store, or predict labels for new videos
(extracted with the run's feature-set spec through the pipeline's single-process path).

The one module that uses both the trainer and the pipeline (import-linter's layers): a new
video's rows go through the pipeline exactly as at extraction, and into the head through the
trainer's own evaluation sequences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidfeat.config import ENGINES, BackboneConfig, SamplingConfig, TrainConfig, check_choice
from vidfeat.errors import ConfigError, InputError, TrainError
from vidfeat.pipeline.discovery import check_inputs, discover
from vidfeat.pipeline.engine import get_backbone, run_videos
from vidfeat.pipeline.tasks import identity_differences
from vidfeat.store import FeatureSetSpec, open_store
from vidfeat.store.spec import identity_fields
from vidfeat.trainer.data import load_data, sequence_positions
from vidfeat.trainer.loop import evaluate, load_run
from vidfeat.trainer.metrics import classification_metrics
from vidfeat.trainer.rows import project


def _check_featureset(config: dict[str, Any]) -> Any:
    fset = open_store(config["store"], mode="r").get_featureset(config["featureset"])
    if fset.spec.config_hash() != config["featureset_config_hash"]:
        raise TrainError(
            f"Run was trained on another version of feature set {config['featureset']!r} "
            "(config hash differs); retrain it on this feature set."
        )
    return fset


SPLITS = ("val", "train", "all")


def evaluate_run(
    run: str | Path, split: str = "val", split_file: str | None = None
) -> dict[str, Any]:
    """Metrics of a run on its validation split (or ``train`` / ``all``), re-read from the
    store. ``split_file`` replaces the run's split definition, e.g. a UCF101 testlist."""
    if split not in SPLITS:
        raise TrainError(f"Invalid --split {split!r}. Choose from: {', '.join(SPLITS)}.")
    model, config, pca = load_run(run)
    _check_featureset(config)
    fields = {k: v for k, v in config.items() if k in TrainConfig.__dataclass_fields__}
    if split_file is not None:
        fields["split_file"] = split_file
    cfg = TrainConfig(**fields)
    data = load_data(cfg)
    if data.classes != config["classes"]:
        raise TrainError(f"Classes changed since the run: {data.classes} vs {config['classes']}.")
    if pca:
        data.values = project(data.values, pca["pca_mean"], pca["pca_components"])
    chosen = {
        "val": data.val_idx,
        "train": data.train_idx,
        "all": np.arange(len(data.video_ids)),
    }[split]
    logits, _ = evaluate(model, data, chosen, cfg, torch.device("cpu"))
    return classification_metrics(logits, data.labels[torch.from_numpy(chosen)], data.classes)


def _run_spec(config: dict[str, Any]) -> tuple[FeatureSetSpec, dict[str, Any]]:
    """The feature-set spec and backbone config a run was trained on: carried by the run
    itself, else (a run from before runs carried them) read from its store."""
    if "spec" not in config:
        fset = _check_featureset(config)
        return fset.spec, dict(fset.meta.get("backbone_config", {}))
    spec = FeatureSetSpec.from_json(config["spec"])
    if spec.config_hash() != config["featureset_config_hash"]:
        raise TrainError("The run's config.json was edited: its spec does not match its hash.")
    return spec, dict(config.get("backbone_config", {}))


def score_rows(
    model: torch.nn.Module, config: dict[str, Any], pca: dict[str, torch.Tensor], rows: np.ndarray
) -> torch.Tensor:
    """Class probabilities (C,) of one video from its rows (R, D) as stored: the run's
    evaluation sequence (the centres of ``seq_len`` equal segments), PCA, the head."""
    feats = torch.from_numpy(np.asarray(rows, np.float32))
    n = len(feats)
    pos, mask = sequence_positions(torch.tensor([n]), config["seq_len"], train=False)
    x = feats[pos.clamp(0, max(n - 1, 0))]
    if pca:
        x = (x - pca["pca_mean"]) @ pca["pca_components"]
    x = x * mask.unsqueeze(-1)
    with torch.no_grad():
        return torch.softmax(model(x, mask), 1)[0]


def _engine_for(spec: FeatureSetSpec, asked: str) -> str:
    """The engine that gives the feature set's values: the one its spec names, eager torch
    where engines' values differ at its precision and the spec names none, and the one asked
    for only where every engine gives its values (float32 computed, float16 stored)."""
    free = identity_fields({"precision": spec.precision, "engine": "openvino"}, spec.dtype)
    if not free["engine"]:
        return asked
    needed = spec.engine or "torch"
    if asked not in ("auto", needed):
        raise ConfigError(
            f"--engine {asked}: the run's feature set was computed with {needed} at "
            f"{spec.precision}, whose values no other engine gives; use --engine {needed}."
        )
    return needed


def predict_videos(
    run: str | Path, videos: list[str], top_k: int = 3, engine: str = "auto"
) -> list[dict[str, Any]]:
    """Top-k labels for every video that ``videos`` names (files, folders, globs, manifests,
    as ``vidfeat extract`` takes them), extracted with the run's feature-set spec. A video
    that cannot be decoded gets an ``error`` entry instead. ``engine``: as extract's, where the
    feature set allows a choice (see _engine_for)."""
    if top_k < 1:
        raise ConfigError(f"Invalid --top-k ({top_k}): must be at least 1.")
    check_choice("--engine", engine, ENGINES)
    model, config, pca = load_run(run)
    spec, backbone_cfg = _run_spec(config)
    if spec.kind != "video":
        raise TrainError(
            f"The run was trained on imported features ({spec.source}): predict needs a "
            "backbone to compute features of new videos. Compute them as you did for the "
            "import, then score them with the run's model.pt."
        )
    check_inputs(videos)
    inputs = discover(videos, "none")
    if not inputs:
        raise InputError(f"No videos found in {', '.join(videos)}.")
    backbone = get_backbone(
        BackboneConfig(
            spec.backbone,
            backbone_cfg.get("weights", "DEFAULT"),
            "auto",
            spec.precision,
            preprocess=backbone_cfg.get("preprocess"),
            resize_on=spec.resize_on,  # the set's rows were resized there: new videos too
            engine=_engine_for(spec, engine),
        )
    )
    if backbone.weights_id != spec.weights_id:
        raise TrainError(f"Backbone weights differ from the feature set's ({spec.weights_id}).")
    differs = identity_differences(spec, backbone.describe())
    if differs:
        raise TrainError(
            f"This machine's {spec.backbone} is not the one of the run's feature set "
            f"({'; '.join(differs)}): its features would be other values."
        )
    sampling = SamplingConfig.from_identity(spec.sampling)
    results, _ = run_videos(inputs, backbone, sampling, 16)
    out: list[dict[str, Any]] = []
    classes = config["classes"]
    for r in results:
        if r.error is not None:
            out.append({"video": r.video.path, "error": str(r.error)})
            continue
        # Round through the stored dtype, so the head sees what training read from the store.
        probs = score_rows(model, config, pca, r.rows()[0].astype(spec.dtype))
        top = probs.topk(min(top_k, len(classes)))
        out.append(
            {
                "video": r.video.path,
                "top": [
                    {"label": classes[int(i)], "prob": float(p)}
                    for p, i in zip(top.values, top.indices, strict=True)
                ],
            }
        )
    return out
