"""Tests of ``pipelines/synthetic_augmentation.py`` and its wiring into ``train`` (``synthetic_minority``).

The generator is the small two-class disc model of ``test_generation.py`` (its fixture and cohort
helpers are reused); the classifier trains one epoch on an imbalanced subset of that cohort.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipelines import synthetic_augmentation, training
from pipelines.distributed import DistContext
from pipelines.synthetic_augmentation import (
    SYNTHETIC_DIR,
    SyntheticShareSampler,
    minority_class,
    prepare_synthetic_minority,
    share_batches,
    synthetic_pool_size,
)
from pipelines.trained_model import TrainedModel, load_trained_model
from pipelines.training import train
from pipelines.training_config import TrainConfig
from tests.pipelines.test_generation import _config, trained_run  # noqa: F401 (a fixture)

CPU = DistContext.single(torch.device("cpu"))


def _blocks(sampler: SyntheticShareSampler) -> list[list[int]]:
    indices = list(sampler)
    b = sampler.batch_size
    return [indices[i : i + b] for i in range(0, len(indices), b)]


def test_minority_class_counts_labelled_records_only() -> None:
    assert minority_class([0, 0, 1, -1, -1, -1], 2) == 1
    assert minority_class([1, 1, 1, 0, -1], 2) == 0
    assert minority_class([0, 1], 2) == 1  # tie: the higher class
    assert minority_class([0, 0, 1, 1], 3) == 2  # a class without a labelled record is the rarest


@pytest.mark.parametrize(("share", "batch"), [(0.25, 8), (0.5, 4)])
def test_each_batch_holds_the_exact_share_when_it_is_whole(share: float, batch: int) -> None:
    sampler = SyntheticShareSampler(20, 6, share, batch_size=batch, num_batches=7)
    blocks = _blocks(sampler)
    assert len(blocks) == 7 and all(len(b) == batch for b in blocks)
    assert [sum(i >= 20 for i in b) for b in blocks] == [share * batch] * 7
    assert all(0 <= i < 26 for b in blocks for i in b)


def test_a_fractional_share_holds_floor_or_ceil_per_batch_and_the_share_on_average() -> None:
    sampler = SyntheticShareSampler(50, 10, 0.1, batch_size=16, num_batches=400)  # 1.6 per batch
    counts = torch.tensor([sum(i >= 50 for i in b) for b in _blocks(sampler)], dtype=torch.float)
    assert set(counts.tolist()) == {1.0, 2.0}
    assert abs(float(counts.mean()) / 16 - 0.1) < 0.01


def test_real_records_are_drawn_without_replacement_and_synthetic_ones_cycled() -> None:
    sampler = SyntheticShareSampler(12, 4, 0.25, batch_size=4, num_batches=4)  # 12 real, 4 synthetic draws
    indices = list(sampler)
    assert sorted(i for i in indices if i < 12) == list(range(12))
    assert sorted(i for i in indices if i >= 12) == [12, 13, 14, 15]


def test_the_generator_reseeds_the_batches() -> None:
    sampler = SyntheticShareSampler(30, 5, 0.25, batch_size=8, num_batches=5)
    sampler.generator.manual_seed(3)
    first = list(sampler)
    sampler.generator.manual_seed(3)
    assert list(sampler) == first
    assert list(sampler) != first


def test_share_real_weights_are_followed() -> None:
    weights = [0.0] * 9 + [1.0]  # only the last real record can be drawn
    sampler = SyntheticShareSampler(10, 2, 0.5, batch_size=4, num_batches=3, real_weights=weights)
    assert {i for i in sampler if i < 10} == {9}


def test_pool_size_is_the_count_or_one_epoch_of_synthetic_draws() -> None:
    assert synthetic_pool_size(7, n_real=100, batch_size=8) == 7
    # 30 real records, 6 real draws per batch of 8 at a quarter: 5 batches, 2 synthetic each
    assert share_batches(30, 8, 0.25) == 5
    assert synthetic_pool_size(0.25, n_real=30, batch_size=8) == 10
    assert share_batches(30, 8, 0.25, world_size=2) == 3  # 15 real records per rank


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"synthetic_minority": -0.1, "generator": "g"},
            r"synthetic_minority must be a number >= 0, got -0.1",
        ),
        ({"synthetic_minority": 2.5, "generator": "g"}, r"a share in \(0, 1\) or a whole count >= 1.*2.5"),
        ({"synthetic_minority": 0.2}, r"synthetic_minority=0.2 needs generator .*got generator=None"),
        ({"generator": "g"}, r"generator='g' is only read with synthetic_minority > 0"),
        ({"synthetic_minority": 0.2, "generator": "g", "mode": "pretrain"}, r"needs mode='classify'"),
        ({"synthetic_minority": float("nan"), "generator": "g"}, r"synthetic_minority must be a number >= 0"),
    ],
)
def test_config_rejects_bad_synthetic_settings(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(datalist="d.json", out_dir="o", **values)


def test_config_round_trips_the_fields(tmp_path: Path) -> None:
    cfg = TrainConfig(datalist="d.json", out_dir=tmp_path, synthetic_minority=12, generator=tmp_path / "gen")
    assert cfg.generator == str(tmp_path / "gen")
    again = TrainConfig.from_json(json.loads(json.dumps(cfg.to_json())))
    assert (again.synthetic_minority, again.generator) == (12, str(tmp_path / "gen"))
    assert cfg.to_params()["synthetic_minority"] == "12"


def _imbalanced(trained_run: Path, root: Path) -> Path:  # noqa: F811
    """A datalist of the generator's cohort: every class-0 training disc, three class-1 ones."""
    source = json.loads(Path(_generator_datalist(trained_run)).read_text())
    cohort = Path(_generator_datalist(trained_run)).parent
    rows = [dict(r, image=str(cohort / r["image"])) for r in source["training"]]
    training = [r for r in rows if r["label"] == 0] + [r for r in rows if r["label"] == 1][:3]
    validation = [dict(r, image=str(cohort / r["image"])) for r in source["validation"]]
    path = root / "imbalanced.json"
    path.write_text(json.dumps({"training": training, "validation": validation}))
    return path


def _generator_datalist(trained_run: Path) -> str:  # noqa: F811
    return str(load_trained_model(trained_run).config.datalist)


def test_training_with_a_share_marks_records_and_leaves_validation_real(
    trained_run: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    datalist = _imbalanced(trained_run, tmp_path)
    loaders = []
    real_loader = training._loader

    def spy(config, records, is_training, ctx, synthetic=None):  # noqa: ANN001, ANN202
        loader = real_loader(config, records, is_training, ctx, synthetic)
        loaders.append((is_training, len(records), len(synthetic or ()), loader))
        return loader

    monkeypatch.setattr(training, "_loader", spy)
    config = _config(datalist, tmp_path / "run")
    config.synthetic_minority, config.generator = 0.25, str(trained_run)
    config.__post_init__()
    metrics = train(config)

    n_real = 12 + 3
    assert metrics["synthetic_minority_class"] == 1.0
    pool = synthetic_pool_size(0.25, n_real, 8)
    assert metrics["train_synthetic"] == pool and metrics["train_images"] == n_real
    written = json.loads((tmp_path / "run" / SYNTHETIC_DIR / "datalist.json").read_text())
    records = [r for section in written.values() for r in section]
    assert len(records) == pool
    assert all(r["synthetic"] is True and r["label"] == 1 and r["latent"].endswith(".npy") for r in records)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["synthetic_minority"] == 0.25 and stored["generator"] == str(trained_run)

    [(train_n, train_syn, train_loader)] = [(n, syn, loader) for flag, n, syn, loader in loaders if flag]
    assert (train_n, train_syn) == (n_real, pool)
    others = [(n, syn) for flag, n, syn, _ in loaders if not flag]
    assert others == [(8, 0)]  # validation: the 8 real records only
    image_paths = [r["image"] for r in train_loader.dataset.data]
    assert sum("synthetic_" in p for p in image_paths) == pool
    # every batch of the training loader holds two synthetic images (a quarter of 8)
    blocks = _blocks(train_loader.sampler)
    assert blocks and all(sum(i >= n_real for i in b) == 2 for b in blocks)


def test_a_count_adds_that_many_records_sampled_like_the_real_ones(
    trained_run: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    datalist = _imbalanced(trained_run, tmp_path)
    config = _config(datalist, tmp_path / "run")
    config.synthetic_minority, config.generator = 5, str(trained_run)
    real = training._records(config, "training", required=True)
    synthetic = prepare_synthetic_minority(config, real, CPU)
    assert synthetic.cls == 1 and len(synthetic.records) == 5
    assert all(r["synthetic"] is True and Path(r["image"]).is_file() for r in synthetic.records)
    loader = training._loader(config, real, True, CPU, synthetic.records)
    assert len(loader.dataset) == len(real) + 5
    assert not isinstance(loader.sampler, SyntheticShareSampler)  # a count: no fixed share per batch
    again = prepare_synthetic_minority(config, real, CPU)  # a resumed run draws the same images again
    assert [r["image"] for r in again.records] == [r["image"] for r in synthetic.records]


def test_a_generator_without_a_decoder_is_refused(
    trained_run: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = load_trained_model(trained_run)
    headless = TrainedModel(network=torch.nn.Linear(2, 2), config=real.config, source="headless")
    monkeypatch.setattr(synthetic_augmentation, "load_trained_model", lambda *a, **k: headless)
    config = TrainConfig(
        datalist=_imbalanced(trained_run, tmp_path),
        out_dir=tmp_path / "run",
        synthetic_minority=4,
        generator="x",
    )
    with pytest.raises(ValueError, match=r"model headless: Linear has no decoder"):
        prepare_synthetic_minority(config, [{"image": "a", "label": 0}, {"image": "b", "label": 1}], CPU)
    assert not (tmp_path / "run" / SYNTHETIC_DIR).exists()


def test_a_missing_generator_is_named(tmp_path: Path) -> None:
    config = TrainConfig(
        datalist="d.json", out_dir=tmp_path / "run", synthetic_minority=4, generator="nowhere"
    )
    with pytest.raises(ValueError, match=r"model nowhere: not an existing run folder"):
        prepare_synthetic_minority(config, [{"image": "a", "label": 0}], CPU)


def test_cli_names_the_missing_generator(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pipelines.cli import main

    datalist = tmp_path / "d.json"
    datalist.write_text("{}")
    code = main(
        [
            "classify",
            "--out",
            str(tmp_path / "run"),
            "--datalist",
            str(datalist),
            "--synthetic-minority",
            "0.2",
        ]
    )
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert err == (
        "medglass classify: error: synthetic_minority=0.2 needs generator (a run with a decoder whose latent "
        "prior draws the minority class), got generator=None"
    )
    assert not (tmp_path / "run").exists()
