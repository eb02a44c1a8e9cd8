"""Integration: a real MONAI Label server (its own venv) serving the project's bundles.

One tiny classification bundle is trained for 1 epoch at 32×32 in a copy of
``bundles/glassbox_classification`` (a user's bundle folder); MONAI Label serves it over a local
datastore holding a phantom PNG, a real pydicom-data MR slice (as NIfTI) and a broken PNG. The
scores must equal ``medglass run <bundle> --config inference`` on the same file; the
explanation label image must be the one :mod:`lib.explanation_labels` computes; training from
MONAI Label must log an MLflow run; failures must be readable HTTP errors after which the
server still serves. The same inference is then made over Orthanc's DICOMweb.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import requests
import torch

from pipelines.bundle_runner import BUNDLES_DIR, run_bundle
from pipelines.cli import main
from tests.apps.label_server import LabelServer, multipart_result
from tests.conftest import pydicom_data_dir

APP_DIR = Path(__file__).resolve().parents[2] / "apps" / "monailabel"
sys.path.insert(0, str(APP_DIR))
from lib.explanation_labels import LABELS, explain_for_viewer, explain_settings  # noqa: E402

pytestmark = pytest.mark.integration

BUNDLE = "glassbox_classification"
SIZE = 32
INFER_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def user_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's bundle folder: the classification bundle at 32×32 (its configs say so), trained 1 epoch in place."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("user_bundles")
    bundle = root / BUNDLE
    shutil.copytree(BUNDLES_DIR / BUNDLE, bundle, ignore=shutil.ignore_patterns("runs", "models"))
    configs = bundle / "configs"
    train = json.loads((configs / "train.json").read_text())
    train["train"].update({"spatial_size": [SIZE, SIZE], "epochs": 1, "batch_size": 8, "device": "cpu"})
    train["dataset"]["cohort_n"] = 40
    (configs / "train.json").write_text(json.dumps(train, indent=1))
    inference = json.loads((configs / "inference.json").read_text())
    inference["spatial_size"] = [SIZE, SIZE]
    (configs / "inference.json").write_text(json.dumps(inference, indent=1))
    explain = json.loads((configs / "explain.json").read_text())
    explain["cf_readout"] = "latent"  # the fast readout: the tests check wiring, not the maps' quality
    (configs / "explain.json").write_text(json.dumps(explain, indent=1))
    run_bundle(bundle, "train", {})
    return root


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory, user_bundles: Path) -> dict[str, Path]:
    """A local datastore: a phantom PNG, a real MR slice as NIfTI, a broken PNG."""
    from transforms.image_loading import load_image

    folder = tmp_path_factory.mktemp("studies")
    cohort = json.loads(
        (user_bundles / BUNDLE / "runs" / "classification" / "cohort" / "datalist.json").read_text()
    )
    phantom = Path(cohort["test"][0]["image"])
    if not phantom.is_absolute():
        phantom = user_bundles / BUNDLE / "runs" / "classification" / "cohort" / phantom
    shutil.copy(phantom, folder / "phantom.png")
    mr = load_image(pydicom_data_dir() / "MR2_UNCR.dcm")
    nib.save(nib.Nifti1Image(mr[0].numpy(), mr.affine.numpy()), folder / "mr2.nii.gz")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 10)
    return {"phantom": folder / "phantom.png", "mr2": folder / "mr2.nii.gz", "folder": folder}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, user_bundles: Path, studies: dict[str, Path]):
    with LabelServer(
        tmp_path_factory.mktemp("label_server"), user_bundles, studies=studies["folder"]
    ) as running:
        yield running


def _bundle_scores(bundle: Path, image: Path, out: Path) -> list[float]:
    """Class probabilities of ``medglass run BUNDLE --config inference --image IMAGE``."""
    assert (
        main(
            ["run", str(bundle), "--config", "inference", "--image", str(image), "--prediction_dir", str(out)]
        )
        == 0
    )
    rows = list(csv.reader((out / "predictions.csv").open()))
    return [float(v) for v in rows[-1][1:]]


def _infer(server: LabelServer, image_id: str, **params) -> requests.Response:
    return requests.post(
        f"{server.url}/infer/{BUNDLE}",
        params={"image": image_id},
        data={"params": json.dumps(params)} if params else None,
        timeout=INFER_TIMEOUT_S,
    )


def _local_labels(bundle: Path, image: Path) -> torch.Tensor:
    """The explanation labels computed here, in the project's venv, on the bundle's preprocessing."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    network = parser.get_parsed_content("network_def")
    state = torch.load(parser.get_parsed_content("checkpoint"), map_location="cpu")
    network.load_state_dict(state.get("model", state))
    network.eval()
    x = parser.get_parsed_content("preprocessing")({"image": str(image)})["image"]
    with torch.no_grad():
        return explain_for_viewer(network, x, explain_settings(bundle)).labels


def test_info_lists_the_bundle_models(server: LabelServer) -> None:
    info = requests.get(f"{server.url}/info/", timeout=30).json()
    model = info["models"][BUNDLE]
    assert model["type"] == "classification"
    assert model["labels"] == {"no lesion": 0, "lesion": 1}
    assert model["dimension"] == 2
    assert BUNDLE in info["trainers"]
    assert "glassbox_pretrain" not in info["models"]  # embeddings: nothing a viewer shows


@pytest.mark.parametrize("image_id", ["phantom", "mr2"])
def test_infer_scores_equal_the_bundle_inference(
    server: LabelServer, user_bundles: Path, studies: dict[str, Path], tmp_path: Path, image_id: str
) -> None:
    response = _infer(server, image_id)
    assert response.status_code == 200, response.text
    params, label_file = multipart_result(response)
    scores = [p["score"] for p in sorted(params["prediction"], key=lambda p: p["idx"])]
    expected = _bundle_scores(user_bundles / BUNDLE, studies[image_id], tmp_path)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert abs(sum(scores) - 1.0) < 1e-5
    # the explanation: a label image on the input image's grid, with the labels the JSON names
    assert params["explanation"]["labels"] == LABELS
    assert label_file is not None
    path = tmp_path / "labels.nii.gz"
    path.write_bytes(label_file)
    labels = np.asarray(nib.load(path).dataobj)
    from transforms.image_loading import load_image

    assert labels.shape == tuple(load_image(studies[image_id]).shape[1:])
    assert set(np.unique(labels)) <= {0, *LABELS.values()}
    assert (labels >= LABELS["change"]).any(), "the counterfactual changed no pixel"
    if image_id == "phantom":  # 32 × 32: no resize, the labels are exactly those computed here
        np.testing.assert_array_equal(labels, _local_labels(user_bundles / BUNDLE, studies[image_id]).numpy())
    else:  # 256 × 256 → 32 × 32 and back: the labels lie on the NIfTI's own grid
        np.testing.assert_allclose(nib.load(studies[image_id]).affine, nib.load(path).affine, atol=1e-4)


def test_scores_only_when_the_explanation_is_switched_off(server: LabelServer) -> None:
    response = _infer(server, "phantom", explain=False)
    assert response.status_code == 200, response.text
    body = response.json()  # no label image: MONAI Label answers with the JSON alone
    assert "explanation" not in body and len(body["prediction"]) == 2


def test_unknown_image_and_broken_image_are_readable_errors(server: LabelServer) -> None:
    unknown = _infer(server, "no-such-image")
    assert unknown.status_code == 404
    assert "no-such-image" in unknown.json()["detail"] and "not in the datastore" in unknown.json()["detail"]
    broken = _infer(server, "broken")
    assert broken.status_code == 422, broken.text
    assert "broken.png" in broken.json()["detail"]
    # the server keeps serving
    assert _infer(server, "phantom", explain=False).status_code == 200


def test_train_from_monai_label_logs_an_mlflow_run(server: LabelServer, tmp_path: Path) -> None:
    import mlflow

    store = f"sqlite:///{tmp_path / 'label_mlruns.db'}"
    response = requests.post(
        f"{server.url}/train/{BUNDLE}",
        params={"run_sync": True},
        json={
            "max_epochs": 2,  # resumes the fixture's epoch 1: one more epoch
            "device": "cpu",
            "tracking_uri": store,
            "tracking_experiment_name": "label-server",
        },
        timeout=600,
    )
    assert response.status_code == 200, response.text
    client = mlflow.MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("label-server")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params.get("epochs") == "2" and runs[0].data.metrics
    # the infer task serves the new weights
    assert _infer(server, "phantom", explain=False).status_code == 200


def _series_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def test_infer_over_dicomweb(orthanc, orthanc_studies, user_bundles: Path, tmp_path: Path) -> None:
    """The same inference over Orthanc's DICOMweb (credentials through MONAI Label's settings)."""
    user, password = orthanc.auth
    env = {"MONAI_LABEL_DICOMWEB_USERNAME": user, "MONAI_LABEL_DICOMWEB_PASSWORD": password}
    env["MONAI_LABEL_DICOMWEB_CACHE_PATH"] = str(tmp_path / "cache")
    phantom, real = orthanc_studies.files["phantom"][0], orthanc_studies.files["real"][1]
    assert real.name == "MR_small.dcm"
    scores, explained = {}, None
    with LabelServer(tmp_path / "server", user_bundles, dicomweb=orthanc.dicomweb_url, env=env) as served:
        for source in (phantom, real):
            response = _infer(served, _series_uid(source), explain=False)
            assert response.status_code == 200, f"{response.text}\n{served.log_tail()}"
            scores[source] = [
                p["score"] for p in sorted(response.json()["prediction"], key=lambda p: p["idx"])
            ]
        explained = _infer(served, _series_uid(phantom))
        missing = _infer(served, "1.2.3.4.5.6.7.8.9", explain=False)
        report = _infer(served, _series_uid(orthanc_studies.files["sr"][0]), explain=False)
        assert _infer(served, _series_uid(phantom), explain=False).status_code == 200  # still serving
    assert missing.status_code == 404 and "1.2.3.4.5.6.7.8.9" in missing.json()["detail"]
    assert report.status_code == 422 and "no pixel data" in report.json()["detail"], report.text
    assert explained.status_code == 200, explained.text
    params, label_file = multipart_result(explained)
    np.testing.assert_allclose(
        [p["score"] for p in sorted(params["prediction"], key=lambda p: p["idx"])], scores[phantom], atol=1e-6
    )
    (tmp_path / "labels.nii.gz").write_bytes(label_file)
    assert np.asarray(nib.load(tmp_path / "labels.nii.gz").dataobj).shape == (
        SIZE,
        SIZE,
    )  # the phantom's grid
    for source in (phantom, real):
        own = _bundle_scores(user_bundles / BUNDLE, source, tmp_path / source.stem)
        np.testing.assert_allclose(scores[source], own, atol=1e-5)
