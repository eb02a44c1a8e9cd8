"""CPU smoke tests of the glass-box bundles: metadata, network I/O, train → evaluate → infer, export."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out

from networks.spatial_glassbox import SpatialGlassBoxNet as GlassBoxNet  # the default core
from pipelines.bundle_runner import BUNDLES_DIR, check_overrides, parse_overrides, run_bundle
from pipelines.cli import main
from pipelines.transfer_learning import CLASSIFIER_POOLING, TRANSFER_MODULES

BUNDLES = ("glassbox_pretrain", "glassbox_classification")
SCHEMA = BUNDLES_DIR / "schema" / "metadata_schema.json"
SIZE = 32
PRESET = json.loads((BUNDLES_DIR / "glassbox_classification" / "configs" / "train.json").read_text())[
    "train"
]["size"]


def _configs(bundle: str) -> Path:
    return BUNDLES_DIR / bundle / "configs"


def _train_overrides(out: Path, db: Path) -> dict:
    return {
        "output_dir": str(out),
        "dataset#cohort_n": 40,
        "train#spatial_size": [SIZE, SIZE],
        "train#epochs": 1,
        "train#batch_size": 8,
        "train#device": "cpu",
        "train#tracking_uri": f"sqlite:///{db}",
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Pretrain 1 epoch, then train the classifier 1 epoch from the pretrained checkpoint (one cohort)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bundles")
    db = root / "mlruns.db"
    pre = _train_overrides(root / "pretrain", db)
    pre_metrics = run_bundle("glassbox_pretrain", "train", pre)
    cls = _train_overrides(root / "classification", db)
    cls["dataset#datalist"] = str(root / "pretrain" / "cohort" / "datalist.json")
    cls["train#pretrained"] = str(root / "pretrain" / "best.pt")
    cls_metrics = run_bundle("glassbox_classification", "train", cls)
    return {"root": root, "pre": pre, "cls": cls, "pre_metrics": pre_metrics, "cls_metrics": cls_metrics}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_verifies_against_shipped_schema(bundle: str) -> None:
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(_configs(bundle) / "metadata.json"), filepath=str(SCHEMA))


def test_broken_metadata_fails(tmp_path: Path) -> None:
    from monai.bundle import verify_metadata

    meta = json.loads((_configs("glassbox_classification") / "metadata.json").read_text())
    del meta["network_data_format"]["inputs"]["image"]["spatial_shape"]
    meta["version"] = "one"
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="Failed validating"):
        verify_metadata(meta_file=str(broken), filepath=str(SCHEMA))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_verify_net_in_out(bundle: str) -> None:
    configs = _configs(bundle)
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.json"),
        device="cpu",
    )


def test_multi_gpu_overlay_sets_distributed(tmp_path: Path) -> None:
    for bundle in BUNDLES:
        parser = ConfigParser()
        parser.read_config(
            [str(_configs(bundle) / "train.json"), str(_configs(bundle) / "multi_gpu_train.json")]
        )
        assert parser["train#distributed"] is True
        assert parser["train#epochs"] == 20  # the base config is kept
        parser["output_dir"] = str(tmp_path)
        parser["datalist"] = str(tmp_path / "d.json")
        assert parser.get_parsed_content("train_config").distributed is True


@pytest.mark.parametrize("bundle", BUNDLES)
def test_train_section_holds_only_what_the_bundle_changes(bundle: str, tmp_path: Path) -> None:
    """Fields not in train keep TrainConfig's default; any field can still be overridden; a typo is named."""
    from pipelines.training_config import TrainConfig

    parser = ConfigParser()
    parser.read_config(str(_configs(bundle) / "train.json"))
    section = {k for k in parser["train"] if not k.startswith("_")}
    parser["output_dir"] = str(tmp_path)
    parser["datalist"] = str(tmp_path / "d.json")
    parser["train#cache_rate"] = 0.25  # not declared by the bundle: an override still reaches the config
    config = parser.get_parsed_content("train_config")
    assert "cache_rate" not in section and config.cache_rate == 0.25
    assert config.lr == TrainConfig.lr and config.flip_prob == TrainConfig.flip_prob
    assert len(section) < 20  # the 38 fields are not copied
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle) / "train.json"))
    parser["output_dir"] = str(tmp_path)
    parser["datalist"] = str(tmp_path / "d.json")
    parser["train#learning_rate"] = 0.1
    with pytest.raises(RuntimeError) as caught:  # MONAI wraps it: "Failed to instantiate component ..."
        parser.get_parsed_content("train_config")
    from pipelines.user_errors import user_error

    assert str(user_error(caught.value)).startswith("train#learning_rate is not a setting of TrainConfig")


@pytest.mark.parametrize("bundle", BUNDLES)
def test_pooled_logits_reaches_the_training_config_and_the_network(bundle: str, tmp_path: Path) -> None:
    parser = ConfigParser()
    parser.read_config(str(_configs(bundle) / "train.json"))
    parser["train#latent"] = "vector"  # pooled_logits belongs to the vector core
    parser["train#pooled_logits"] = False
    parser["train#spatial_size"] = [32, 32]
    parser["output_dir"] = str(tmp_path)
    parser["datalist"] = str(tmp_path / "d.json")
    assert parser.get_parsed_content("train_config").pooled_logits is False
    assert parser.get_parsed_content("network_def").pooled_logits is False
    inference = ConfigParser()
    inference.read_config(str(_configs(bundle) / "inference.json"))
    inference["latent"] = "vector"
    assert inference.get_parsed_content("network_def").pooled_logits  # null: on where the network allows


@pytest.mark.parametrize("bundle", BUNDLES)
def test_latent_core_reaches_the_training_config_and_the_network(bundle: str, tmp_path: Path) -> None:
    from networks.glassbox import GlassBoxNet as VectorNet

    for latent, cls in (("spatial", GlassBoxNet), ("vector", VectorNet)):
        parser = ConfigParser()
        parser.read_config(str(_configs(bundle) / "train.json"))
        parser["train#latent"] = latent
        parser["train#spatial_size"] = [32, 32]
        parser["output_dir"] = str(tmp_path)
        parser["datalist"] = str(tmp_path / "d.json")
        assert parser.get_parsed_content("train_config").latent == latent
        assert isinstance(parser.get_parsed_content("network_def"), cls)
    inference = ConfigParser()
    inference.read_config(str(_configs(bundle) / "inference.json"))
    assert isinstance(inference.get_parsed_content("network_def"), GlassBoxNet)  # the default core


def test_parse_overrides() -> None:
    got = parse_overrides(["--train#epochs", "1", "--output_dir=/tmp/x", "--train#spatial_size", "[32, 32]"])
    assert got == {"train#epochs": 1, "output_dir": "/tmp/x", "train#spatial_size": [32, 32]}
    with pytest.raises(ValueError, match="missing value"):
        parse_overrides(["--train#epochs"])


def test_unknown_override_is_rejected_before_running(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(
        ValueError,
        match=r"config key 'train#epochz' does not exist in bundles/glassbox_classification/configs/train\.json",
    ):
        run_bundle("glassbox_classification", "train", {"train#epochz": 1, "output_dir": str(tmp_path)})
    assert not any(tmp_path.iterdir())
    # a TrainConfig field the bundle does not declare is a valid override
    parser = ConfigParser()
    parser.read_config(str(_configs("glassbox_classification") / "train.json"))
    check_overrides(parser, {"train#weight_decay": 0.01}, ["train.json"])
    with pytest.raises(ValueError, match="config key 'dataset#cohort_nn' does not exist"):
        check_overrides(parser, {"dataset#cohort_nn": 3}, ["train.json"])
    assert main(["run", "glassbox_pretrain", "--config", "evaluate", "--train#epochz", "1"]) == 2
    assert "config key 'train#epochz' does not exist" in capsys.readouterr().err


def test_bundles_train_the_default_preset() -> None:
    from pipelines.training_config import TrainConfig

    for bundle in BUNDLES:  # train and inference must build the same network, the CLI's default
        train = json.loads((_configs(bundle) / "train.json").read_text())["train"]["size"]
        inference = json.loads((_configs(bundle) / "inference.json").read_text())["size"]
        assert train == inference == TrainConfig.size, (bundle, train, inference)


def test_pretrained_checkpoint_seeds_classification(trained: dict) -> None:
    own = GlassBoxNet(2, 1, 2, (SIZE, SIZE), size=PRESET).state_dict()
    expected = [
        k
        for k in own
        if k.split(".")[0] in ("encoder", "attention", "latent", "decoder")
        and not k.startswith(CLASSIFIER_POOLING)  # the classifier's attention pooling is trained anew
    ]
    assert len(expected) < len([k for k in own if k.split(".")[0] in TRANSFER_MODULES])
    assert trained["cls_metrics"]["pretrained_tensors_loaded"] == len(expected)
    assert trained["pre_metrics"]["epochs_completed"] == 1


def _read_predictions(path: Path) -> dict[str, np.ndarray]:
    with open(path) as handle:
        return {row[0]: np.array([float(v) for v in row[1:]]) for row in csv.reader(handle)}


def test_classification_evaluate_and_inference(trained: dict) -> None:
    from sklearn.metrics import roc_auc_score

    out = Path(trained["cls"]["output_dir"])
    metrics = run_bundle("glassbox_classification", "evaluate", trained["cls"])
    assert json.loads((out / "eval" / "metrics.json").read_text()) == metrics
    pred_file = run_bundle(
        "glassbox_classification",
        "inference",
        {
            "output_dir": str(out),
            "spatial_size": [SIZE, SIZE],
            "datalist": trained["cls"]["dataset#datalist"],
        },
    )
    preds = _read_predictions(Path(pred_file))
    datalist_path = Path(trained["cls"]["dataset#datalist"])
    test = json.loads(datalist_path.read_text())["test"]
    labels = np.array([r["label"] for r in test])
    probs = np.stack([preds[str(datalist_path.parent / r["image"])] for r in test])
    assert probs.shape == (len(test), 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert metrics["test_auc"] == pytest.approx(roc_auc_score(labels, probs[:, 1]), abs=1e-6)
    assert metrics["test_accuracy"] == pytest.approx(float(np.mean(probs.argmax(axis=1) == labels)), abs=1e-6)
    assert metrics["test_auc"] == pytest.approx(trained["cls_metrics"]["test_auc"], abs=1e-6)
    # the out-of-distribution check of every predicted image (the reference training wrote)
    assert (out / "ood_reference.json").is_file()
    ood = json.loads((Path(pred_file).parent / "ood.json").read_text())
    assert sorted(r["image"] for r in ood["images"]) == sorted(
        str(datalist_path.parent / r["image"]) for r in test
    )
    for row in ood["images"]:
        flagged = any(
            row[k] > row[t]
            for k, t in (
                ("recon_error", "recon_threshold"),
                ("latent_distance", "latent_threshold"),
                ("unexplained_variance", "unexplained_threshold"),
            )
        )
        assert row["flagged"] is flagged
    assert ood["flagged_share"] == pytest.approx(np.mean([r["flagged"] for r in ood["images"]]))


def test_bundle_inference_flags_a_ct_slice(
    trained: dict, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """The bundle's logging.conf replaces the root handlers: its console output is what a user sees."""
    from tests.conftest import pydicom_test_dir

    out = Path(trained["cls"]["output_dir"])
    ct = pydicom_test_dir() / "CT_small.dcm"
    overrides = {
        "output_dir": str(out),
        "spatial_size": [SIZE, SIZE],
        "image": str(ct),
        "prediction_dir": str(tmp_path),
    }
    run_bundle("glassbox_classification", "inference", overrides)
    ood = json.loads((tmp_path / "ood.json").read_text())
    assert [r["image"] for r in ood["images"]] == [str(ct)] and ood["images"][0]["flagged"] is True
    assert "CT_small.dcm is unlike the model's training images" in capfd.readouterr().out
    # a reference of other weights is not used: said, and no ood.json
    other = tmp_path / "other.pt"
    state = torch.load(out / "best.pt", weights_only=True)
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, other)
    run_bundle(
        "glassbox_classification",
        "inference",
        {**overrides, "checkpoint": str(other), "prediction_dir": str(tmp_path / "b")},
    )
    assert not (tmp_path / "b" / "ood.json").exists()
    assert "computed for other weights" in capfd.readouterr().out


def test_pretrain_evaluate_matches_hand_computed_mse(trained: dict) -> None:
    from monai.transforms import Compose

    from transforms.image_loading import LoadMedicalImaged
    from transforms.preprocessing import preprocessing_transforms

    out = Path(trained["pre"]["output_dir"])
    metrics = run_bundle("glassbox_pretrain", "evaluate", trained["pre"])
    net = GlassBoxNet(2, 1, 2, (SIZE, SIZE), size=PRESET).eval()
    net.load_state_dict(torch.load(out / "best.pt", weights_only=True))
    stored = json.loads((out / "config.json").read_text())["intensity_range"]
    assert stored is not None and stored[0] < stored[1]  # the range training computed
    chain = Compose(
        [
            LoadMedicalImaged("image"),
            *preprocessing_transforms("image", spatial_size=(SIZE, SIZE), intensity_range=tuple(stored)),
        ]
    )
    datalist = out / "cohort" / "datalist.json"
    test = json.loads(datalist.read_text())["test"]
    errors = []
    with torch.no_grad():
        for record in test:
            image = chain({"image": str(datalist.parent / record["image"])})["image"].as_tensor()[None]
            errors.append(float(((net(image)["recon"] - image) ** 2).mean()))
    assert metrics["test_recon_mse"] == pytest.approx(float(np.mean(errors)), rel=1e-4)


def test_medglass_run_inference_and_ckpt_export(
    trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = Path(trained["pre"]["output_dir"])
    status = main(
        [
            "run",
            "glassbox_pretrain",
            "--config",
            "inference",
            "--output_dir",
            str(out),
            "--spatial_size",
            f"[{SIZE}, {SIZE}]",
            "--prediction_dir",
            str(tmp_path / "pred"),
        ]
    )
    assert status == 0, capsys.readouterr().err
    latents = _read_predictions(tmp_path / "pred" / "latents.csv")
    assert len(latents) == len(json.loads((out / "cohort" / "datalist.json").read_text())["test"])
    assert {len(v) for v in latents.values()} == {16}

    cls_dir = Path(trained["cls"]["output_dir"])
    configs = _configs("glassbox_classification")
    exported = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(cls_dir / "last.pt"),
        key_in_ckpt="model",
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.json"),
        **{"spatial_size": [SIZE, SIZE]},
    )
    scripted = torch.jit.load(str(exported))
    parser = ConfigParser()
    parser.read_config(str(configs / "inference.json"))
    parser["spatial_size"] = [SIZE, SIZE]
    eager = parser.get_parsed_content("network_def").eval()
    eager.load_state_dict(torch.load(cls_dir / "last.pt", weights_only=True)["model"])
    x = torch.rand(3, 1, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), eager(x))
    shutil.rmtree(tmp_path / "pred")


def test_inference_with_an_eraser_changes_only_what_the_head_sees(trained: dict, tmp_path: Path) -> None:
    from evaluation.concept_erasure import ErasedClassifier, LatentEraser, fit_eraser
    from pipelines.latent_codes import load_model_input
    from pipelines.trained_model import load_trained_model

    out = Path(trained["cls"]["output_dir"])
    datalist = Path(trained["cls"]["dataset#datalist"])
    model = load_trained_model(out)
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 2, 64)
    mu = rng.standard_normal((64, 16)) + 3.0 * groups[:, None] * np.eye(16)[0]  # the concept lives in z0
    eraser_file = fit_eraser(mu, groups, attribute="toy").save(tmp_path / "eraser.pt")
    common = {"output_dir": str(out), "spatial_size": [SIZE, SIZE], "datalist": str(datalist)}
    plain = _read_predictions(
        Path(
            run_bundle(
                "glassbox_classification", "inference", {**common, "prediction_dir": str(tmp_path / "a")}
            )
        )
    )
    erased = _read_predictions(
        Path(
            run_bundle(
                "glassbox_classification",
                "inference",
                {**common, "prediction_dir": str(tmp_path / "b"), "eraser": str(eraser_file)},
            )
        )
    )
    assert plain.keys() == erased.keys()
    wrapped = ErasedClassifier(model.network, LatentEraser.load(eraser_file)).eval()
    for name in list(erased)[:3]:
        x, _ = load_model_input(name, (SIZE, SIZE), intensity_range=model.intensity_range)
        with torch.no_grad():
            expected = torch.softmax(wrapped(x).float(), dim=1)[0].numpy()
        np.testing.assert_allclose(erased[name], expected, atol=1e-5)
    assert any(not np.allclose(plain[k], erased[k], atol=1e-6) for k in plain)


def test_explain_config_writes_the_dataset_report(trained: dict) -> None:
    out = Path(trained["cls"]["output_dir"])
    result = run_bundle(
        "glassbox_classification",
        "explain",
        {
            "output_dir": str(out),
            "datalist": trained["cls"]["dataset#datalist"],
            "max_images": 1,
            "track": False,
        },
    )
    assert Path(result["report"]) == out / "explain" / "report.html"
    metrics = json.loads((out / "explain" / "metrics.json").read_text())
    assert metrics["images"] == len(json.loads(Path(trained["cls"]["dataset#datalist"]).read_text())["test"])
    assert "active_units" in metrics and "disentanglement/mig" in metrics
