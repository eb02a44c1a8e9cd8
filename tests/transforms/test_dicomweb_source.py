"""The DICOMweb source's checks that need no server: URLs, credentials from the environment."""

from __future__ import annotations

import pytest

from transforms.dicomweb_source import (
    PASSWORD_ENV,
    TOKEN_ENV,
    USER_ENV,
    check_dicomweb_url,
    dicomweb_session,
    find_studies,
    is_dicomweb_url,
    open_dicomweb,
)


def test_urls_are_checked_and_credentials_in_them_refused_without_echo():
    assert check_dicomweb_url("https://pacs.example:8042/dicom-web/") == "https://pacs.example:8042/dicom-web"
    with pytest.raises(ValueError, match="must be http") as caught:
        check_dicomweb_url("pacs:8042/dicom-web")
    with pytest.raises(ValueError, match=r"without \?query"):
        check_dicomweb_url("http://pacs/dicom-web?limit=3")
    with pytest.raises(ValueError, match=r"holds credentials") as caught:
        check_dicomweb_url("http://alice:s3cret-pw@pacs:8042/dicom-web")
    assert "s3cret-pw" not in str(caught.value) and "http://pacs:8042/dicom-web" in str(caught.value)
    assert is_dicomweb_url("HTTPS://pacs/dicom-web") and not is_dicomweb_url("/data/http_exports")


def test_credentials_come_from_the_environment():
    session = dicomweb_session({USER_ENV: "alice", PASSWORD_ENV: "pw"})
    assert session.auth == ("alice", "pw") and "Authorization" not in session.headers
    assert dicomweb_session({TOKEN_ENV: "tok"}).headers["Authorization"] == "Bearer tok"
    anonymous = dicomweb_session({})
    assert anonymous.auth is None and "Authorization" not in anonymous.headers
    with pytest.raises(ValueError, match=f"\\${PASSWORD_ENV} is not set") as caught:
        dicomweb_session({USER_ENV: "alice"})
    with pytest.raises(ValueError, match="not both") as both:
        dicomweb_session({TOKEN_ENV: "tok-value", USER_ENV: "alice", PASSWORD_ENV: "pw-value"})
    assert "alice" not in str(caught.value) and "tok-value" not in str(both.value)


def test_requested_study_uids_are_validated_before_any_request():
    client = open_dicomweb("http://127.0.0.1:9/dicom-web", environ={})  # nothing listens: no request is made
    with pytest.raises(ValueError, match=r"--study '1\.2\.3/\.\./x' is not a DICOM UID"):
        find_studies(client, ["1.2.3", "1.2.3/../x"])
