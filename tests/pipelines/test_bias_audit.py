"""Tests of pipelines/bias_audit.py on a model that relies on an attribute by construction."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipelines.bias_audit import audit


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.src: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        if tag == "img":
            self.src.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def audited(shortcut_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    run, datalist = shortcut_run
    out = tmp_path_factory.mktemp("audit")
    result = audit(
        run,
        datalist,
        out,
        attributes=["shortcut", "random_group", "sex"],
        n_permutations=1000,
        n_boot=50,
        track=False,
        progress=False,
    )
    return result, out


def test_flags_the_attribute_the_head_reads_and_not_the_null_one(audited: tuple[dict, Path]) -> None:
    result, _ = audited
    assert result["flags"]["shortcut"] is True
    assert result["flags"]["random_group"] is False
    m = result["metrics"]
    assert m["shortcut/probe_auc"] > 0.9
    assert m["shortcut/reliance_p_holm"] < 0.01 and m["shortcut/leakage_p_holm"] < 0.01
    assert m["random_group/reliance_p_holm"] > 0.01
    assert m["shortcut/gap"] > 0.5  # the head's decision is the attribute itself


def test_report_metrics_and_summary_are_written(audited: tuple[dict, Path]) -> None:
    result, out = audited
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["shortcut/flagged"] == 1.0 and metrics["random_group/flagged"] == 0.0
    page = (out / "report.html").read_text()
    parser = _Images()
    parser.feed(page)
    assert parser.src and all(
        (out / s).is_file() and (out / s).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for s in parser.src
    )
    sentence = next(s for s in result["summary"] if "shortcut" in s)
    assert sentence.startswith("FLAGGED") and "sensitivity" in sentence and "probe AUC" in sentence
    assert "erasing shortcut changes AUC by" in sentence


def test_bad_arguments_are_named(shortcut_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, datalist = shortcut_run
    with pytest.raises(ValueError, match=r"attributes \['nope'\] are not in the datalist records"):
        audit(run, datalist, tmp_path, attributes=["nope"], track=False, progress=False)
    with pytest.raises(
        ValueError, match=r"n_permutations=100 cannot reach alpha=0.01 after Holm correction over 2"
    ):
        audit(
            run,
            datalist,
            tmp_path,
            attributes=["sex", "site"],
            n_permutations=100,
            track=False,
            progress=False,
        )
    with pytest.raises(ValueError, match="calibration_section must differ"):
        audit(run, datalist, tmp_path, calibration_section="test", track=False, progress=False)
    with pytest.raises(ValueError, match="no section 'holdout'"):
        audit(run, datalist, tmp_path, section="holdout", track=False, progress=False)


def test_the_report_reads_intervention_and_reliance_apart(audited: tuple[dict, Path]) -> None:
    result, out = audited
    page = (out / "report.html").read_text()
    assert "Two different numbers in each line below, read them apart" in page
    assert "Intervention — what happens if we remove this direction" in page
    assert "Within-label reliance — does the decision rely on it within each label" in page
    assert result["reading"][0].startswith("Intervention") and result["reading"][1].startswith("Within-label")
    assert "intervention: removing the shortcut direction from the latent would move the logit by" in page
    assert "not a test of reliance" in page
    assert "intervention: |Δ logit| if removed" in page and "within-label reliance p (Holm)" in page
    # the flag's reason speaks of the within-label test
    assert "within each label the decision relies on it" in page
    assert result["flags"]["shortcut"] is True
