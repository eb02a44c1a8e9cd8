"""Tests of ``pipelines/generation.py``: learnt-prior sampling, conditioning and the written datalist.

A module fixture fits a small model on an easy two-class cohort (a dim disc for class 0, a
bright one for class 1), so that class-conditional samples carry their class.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from phantoms.image_files import write_png_image
from pipelines.datalists import UNLABELLED, load_datalist
from pipelines.generation import (
    PRIOR_FILE,
    condition,
    decode_samples,
    fit_latent_prior,
    generate,
    sample_latents,
)
from pipelines.latent_codes import load_model_input
from pipelines.trained_model import TrainedModel, load_trained_model
from pipelines.training import build_network, train
from pipelines.training_config import TrainConfig

SIZE = 16


def _disc_cohort(root: Path, n: int, seed: int) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """``n`` 16×16 PNGs: a disc of brightness 0.3 (label 0) or 0.9 (label 1) on a dark background.

    Returns the datalist (all images in ``training``, the last 8 also in ``validation``) and the
    images ``(n, 1, 16, 16)`` and labels as tensors.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    records, images = [], []
    for i in range(n):
        label = i % 2
        cx, cy, r = rng.uniform(6, 10), rng.uniform(6, 10), rng.uniform(3.5, 5)
        image = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < r * r, 0.3 + 0.6 * label, 0.05)
        image = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)
        write_png_image(root / "images" / f"d{i:03d}.png", image)
        records.append({"id": f"d{i:03d}", "image": f"images/d{i:03d}.png", "label": label})
        images.append(np.round(image * 65535) / 65535)  # what the 16-bit file holds
    datalist = root / "datalist.json"
    datalist.write_text(json.dumps({"training": records, "validation": records[-8:]}))
    labels = torch.tensor([r["label"] for r in records])
    return datalist, torch.tensor(np.array(images), dtype=torch.float32)[:, None], labels


def _config(datalist: Path, out_dir: Path, epochs: int = 1) -> TrainConfig:
    return TrainConfig(
        datalist=datalist,
        out_dir=out_dir,
        spatial_size=(SIZE, SIZE),
        latent_dim=8,
        spatial_channels=4,
        epochs=epochs,
        batch_size=8,
        flip_prob=0.0,
        intensity_range=(0.0, 65535.0),
        tracking_uri=f"sqlite:///{out_dir.parent / 'mlruns.db'}",
        progress=False,
        device="cpu",
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder (config.json, best.pt) of a model fitted for 100 full-batch steps.

    Reconstruction plus classification, in eval mode (deterministic latent): enough for the
    decoder to draw the disc's brightness and the head to read it; ``train`` would spend most
    of the time budget on loaders and MLflow for the same steps.
    """
    root = tmp_path_factory.mktemp("generation")
    datalist, x, y = _disc_cohort(root / "cohort", 24, seed=0)
    config = _config(datalist, root / "run")
    torch.manual_seed(0)
    net = build_network(config).eval()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(100):
        out = net(x)
        loss = 10 * F.mse_loss(out["recon"], x) + F.cross_entropy(out["logits"], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    (root / "run").mkdir()
    (root / "run" / "config.json").write_text(json.dumps(config.to_json()))
    torch.save({"model": net.state_dict()}, root / "run" / "best.pt")
    return root / "run"


@pytest.fixture(scope="module")
def trained(trained_run: Path) -> TrainedModel:
    torch.set_num_threads(2)
    return load_trained_model(trained_run)


def test_prior_is_cached_and_stamped(trained: TrainedModel, trained_run: Path) -> None:
    prior = fit_latent_prior(trained)
    assert (trained_run / PRIOR_FILE).is_file()
    assert prior.classes == [0, 1]
    assert prior.latent_size == trained.network.latent_size
    assert len(prior.stamp["sha256"]) == 64
    again = fit_latent_prior(trained)  # from the cache
    np.testing.assert_array_equal(again.mu, prior.mu)
    assert again.stamp == prior.stamp


def test_prior_cap_keeps_the_labelled_records(trained: TrainedModel) -> None:
    records = load_datalist(trained.config.datalist, "training")
    positives = [r for r in records if r["label"] == 1][:2]
    negatives = [r for r in records if r["label"] == 0][:2]
    unlabelled = [{**r, "label": UNLABELLED} for r in records[:6]]
    # in file order the cap of 4 would hold only unlabelled images and no class model
    prior = fit_latent_prior(trained, records=unlabelled + negatives + positives, max_images=4)
    assert prior.classes == [0, 1]
    assert sorted(prior.labels.tolist()) == [0, 0, 1, 1]


@pytest.mark.parametrize("source", ["aggregate", "posterior"])
def test_class_conditional_samples_are_classified_as_their_class(trained: TrainedModel, source: str) -> None:
    prior = fit_latent_prior(trained)
    for cls in (0, 1):
        z = sample_latents(prior, 16, cls=cls, source=source, seed=1)
        assert z.shape == (16, trained.network.latent_size)
        images = decode_samples(trained, z)
        assert images.shape == (16, 1, SIZE, SIZE)
        assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
        with torch.no_grad():
            predicted = trained.network(images)["logits"].argmax(dim=1)
        assert float((predicted == cls).float().mean()) > 0.75, (source, cls)


def test_same_seed_same_latents_other_seed_other_latents(trained: TrainedModel) -> None:
    prior = fit_latent_prior(trained)
    a = sample_latents(prior, 4, seed=3, source="aggregate")
    assert torch.equal(a, sample_latents(prior, 4, seed=3, source="aggregate"))
    assert not torch.equal(a, sample_latents(prior, 4, seed=4, source="aggregate"))
    # the beta-VAE prior N(0, I): standard normal numbers of the latent's size
    z = sample_latents(prior, 256, seed=0, source="prior")
    assert (
        z.shape == (256, prior.latent_size) and abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05
    )


def test_condition_moves_the_reencoded_value_towards_the_target(trained: TrainedModel) -> None:
    prior = fit_latent_prior(trained)
    z = sample_latents(prior, 4, cls=0, seed=2)
    k = int((trained.network.head.weight[1] - trained.network.head.weight[0]).abs().argmax())
    before = trained.network.encode(decode_samples(trained, z))["mu"][:, k].detach()
    target = float(before.mean()) + 1.0
    moved, report = condition(trained, z, {k: target})
    assert moved.shape == z.shape
    gap_before = float((before - target).abs().mean())
    assert report[str(k)]["target"] == target
    assert report[str(k)]["mean_abs_gap"] < 0.5 * gap_before
    with pytest.raises(ValueError, match=r"latent_values: index must be an int in \[0, 7\], got 8"):
        condition(trained, z, {8: 1.0})


def test_generate_writes_reproducible_marked_records(trained: TrainedModel, tmp_path: Path) -> None:
    first = generate(trained, tmp_path / "a", n=10, cls=1, seed=5, source="posterior")
    generate(trained, tmp_path / "b", n=10, cls=1, seed=5, source="posterior")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    data = json.loads((tmp_path / "a" / "datalist.json").read_text())
    assert len(data["training"]) == 8 and len(data["validation"]) == 2
    assert first["labels"] == {"1": 10} and first["predicted_as_label"] > 0.75
    for record in data["training"] + data["validation"]:
        assert record["synthetic"] is True and record["label"] == 1 and record["source"] == "posterior"
        assert record["drawn_from"].startswith("d")
        latent = np.load(tmp_path / "a" / record["latent"])
        assert latent.shape == (trained.network.latent_size,)
        assert len(record["mu"]) == trained.network.latent_dim
        # the file holds the run's intensity units: its preprocessing reads back the decoded image
        x = load_model_input(
            tmp_path / "a" / record["image"], (SIZE, SIZE), intensity_range=trained.intensity_range
        )[0]
        decoded = decode_samples(trained, torch.from_numpy(latent)[None])
        assert float((x - decoded).abs().max()) < 1e-3
    # the same call again into its own output is allowed and changes nothing
    before = (tmp_path / "a" / "datalist.json").read_bytes()
    generate(trained, tmp_path / "a", n=10, cls=1, seed=5, source="posterior")
    assert (tmp_path / "a" / "datalist.json").read_bytes() == before


def test_generate_prior_source_and_mixed_classes(trained: TrainedModel, tmp_path: Path) -> None:
    summary = generate(trained, tmp_path, n=12, source="aggregate", seed=0, latent_values=None)
    data = json.loads((tmp_path / "datalist.json").read_text())
    records = data["training"] + data["validation"]
    assert {r["label"] for r in records} == {0, 1}
    assert all(r["source"] == "aggregate" and "drawn_from" not in r for r in records)
    assert sum(summary["labels"].values()) == 12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, r"n must be a positive int, got 0"),
        ({"n": 2, "cls": 2}, r"cls must be None or an int in \[0, 1\] \(the model's classes\), got 2"),
        (
            {"n": 2, "source": "noise"},
            r"source must be one of \('aggregate', 'posterior', 'prior'\), got 'noise'",
        ),
        ({"n": 2, "image_format": "jpeg"}, r"image_format must be one of \('png', 'nifti'\), got 'jpeg'"),
    ],
)
def test_generate_refuses_bad_arguments(trained: TrainedModel, tmp_path: Path, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        generate(trained, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_generate_refuses_a_folder_of_another_run(trained: TrainedModel, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(
        ValueError, match=r"out_dir .*other: already holds files of another run \(notes.txt\)"
    ):
        generate(trained, tmp_path / "other", n=2)
    generate(trained, tmp_path / "gen", n=2, seed=0)
    with pytest.raises(ValueError, match=r"out_dir .*gen: already holds files of another run"):
        generate(trained, tmp_path / "gen", n=2, seed=1)


def test_generate_refuses_a_model_without_decoder(trained: TrainedModel, tmp_path: Path) -> None:
    headless = TrainedModel(network=torch.nn.Linear(2, 2), config=trained.config, source="linear")
    with pytest.raises(ValueError, match=r"model linear: Linear has no decoder"):
        generate(headless, tmp_path / "out", n=2)


def test_classify_trains_on_a_generated_datalist(trained: TrainedModel, tmp_path: Path) -> None:
    generate(trained, tmp_path / "gen", n=20, seed=0)
    metrics = train(_config(tmp_path / "gen" / "datalist.json", tmp_path / "run"))
    assert metrics["epochs_completed"] == 1
    assert (tmp_path / "run" / "best.pt").is_file() or (tmp_path / "run" / "last.pt").is_file()
