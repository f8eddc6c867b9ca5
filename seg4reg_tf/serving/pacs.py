"""The PACS round trip over DICOMweb: find a study's radiographs (QIDO-RS), retrieve them
(WADO-RS), predict each, and store the DICOM SR and SEG results back into the same study
(STOW-RS), with `dicomweb-client` (the maintained DICOMweb client on requests and pydicom).

Credentials never come from the command line, and never appear in logs or messages:
`SEG4REG_DICOMWEB_TOKEN` (sent as a bearer token), or `SEG4REG_DICOMWEB_USER` with
`SEG4REG_DICOMWEB_PASSWORD` (HTTP basic), or `SEG4REG_DICOMWEB_CREDENTIALS`, the path of a JSON
file holding {"token": ...} or {"user": ..., "password": ...}. A URL with credentials in it
is refused.

Requests are not retried. Nothing is half-stored: every result of the study is built (and written under the output
folder) before one STOW-RS request stores them all; when the PACS refuses, fails or times
out, the error says so and which instances it reports stored, if any.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import urllib.parse

import pydicom

from seg4reg_tf.data import radiographs
from seg4reg_tf.serving import report

TOKEN, USER, PASSWORD, CREDENTIALS = (f"SEG4REG_DICOMWEB_{name}" for name in ("TOKEN", "USER", "PASSWORD", "CREDENTIALS"))
# instances of a study that are not radiographs to read: SR documents, SEG, presentation states
NOT_RADIOGRAPHS = ("1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.66.", "1.2.840.10008.5.1.4.1.1.11.")
SOP_CLASS, SOP_INSTANCE, SERIES = "00080016", "00080018", "0020000E"


class PacsError(RuntimeError):
    """A DICOMweb request failed; the message names the server (without credentials) and the
    problem."""


@dataclasses.dataclass(frozen=True)
class Instance:
    """One instance of a study: its UIDs and SOP class."""
    study: str
    series: str
    sop: str
    sop_class: str


def credentials(environ=os.environ) -> dict:
    """{"token": ...} or {"user": ..., "password": ...} from the environment, or {} for none.

    Raises:
        ValueError: a credentials file that is missing, not JSON, or holds neither form; a
            user without a password.
    """
    if environ.get(TOKEN):
        return {"token": environ[TOKEN]}
    if environ.get(USER):
        if not environ.get(PASSWORD):
            raise ValueError(f"{USER} is set but {PASSWORD} is not")
        return {"user": environ[USER], "password": environ[PASSWORD]}
    path = environ.get(CREDENTIALS)
    if not path:
        return {}
    try:
        values = json.loads(pathlib.Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such credentials file ({CREDENTIALS})") from None
    except ValueError:
        raise ValueError(f"{path}: the credentials file is not JSON") from None
    if isinstance(values, dict) and values.get("token"):
        return {"token": str(values["token"])}
    if isinstance(values, dict) and values.get("user") and values.get("password"):
        return {"user": str(values["user"]), "password": str(values["password"])}
    raise ValueError(f'{path}: the credentials file must hold {{"token": ...}} or {{"user": ..., "password": ...}}')


def connect(url: str, environ=os.environ, timeout: float = 30.0):
    """A `dicomweb_client.DICOMwebClient` for the server at `url` (its DICOMweb root, e.g.
    http://127.0.0.1:8042/dicom-web), with the environment's credentials.

    Raises:
        ValueError: a URL that is not http(s), or has credentials in it; bad credentials settings.
    """
    from dicomweb_client.api import DICOMwebClient
    from dicomweb_client.session_utils import create_session, create_session_from_user_pass

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url}: not an http(s) DICOMweb URL")
    if parts.username or parts.password:
        raise ValueError(f"the DICOMweb URL holds credentials: set {USER} / {PASSWORD} or {TOKEN} instead")
    secret = credentials(environ)
    if "user" in secret:
        session = create_session_from_user_pass(secret["user"], secret["password"])
    else:
        session = create_session()
    if "token" in secret:
        # on the session, not the client: dicomweb-client logs each request's own headers
        session.headers["Authorization"] = f"Bearer {secret['token']}"
    client = DICOMwebClient(url, session=session, timeout=timeout)
    # no retries (dicomweb-client retries any failure five times over 30 s of back-off): a
    # failed request fails the run at once, with nothing half-stored; run it again
    client.set_http_retry_params(retry=False)
    return client


def _fail(client, doing: str, error: Exception) -> PacsError:
    """A PacsError naming the server and what failed, never the credentials."""
    import requests

    reason = type(error).__name__
    if isinstance(error, requests.HTTPError) and error.response is not None:
        reason = f"HTTP {error.response.status_code} {error.response.reason}"
    elif isinstance(error, requests.Timeout):
        reason = "no answer within the timeout"
    elif isinstance(error, requests.ConnectionError):
        reason = "cannot connect"
    return PacsError(f"{_server(client)}: {doing} failed: {reason}")


def _server(client) -> str:
    parts = urllib.parse.urlsplit(client.base_url)
    return urllib.parse.urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))


def find_instances(client, study: str, series: str | None = None) -> list[Instance]:
    """The study's (or series') instances that may be radiographs (QIDO-RS).

    Raises:
        PacsError: the search failed, or found no such study or series.
    """
    import requests

    try:
        found = client.search_for_instances(study_instance_uid=study, series_instance_uid=series, get_remaining=True)
    except (requests.RequestException, OSError) as error:
        raise _fail(client, f"searching study {study}", error) from None
    instances = []
    for item in found:
        value = {tag: (item.get(tag, {}).get("Value") or [""])[0] for tag in (SOP_CLASS, SOP_INSTANCE, SERIES)}
        if not value[SOP_CLASS].startswith(NOT_RADIOGRAPHS):
            instances.append(Instance(study, value[SERIES] or (series or ""), value[SOP_INSTANCE], value[SOP_CLASS]))
    if not instances:
        where = f"series {series} of study {study}" if series else f"study {study}"
        raise PacsError(f"{_server(client)}: {where}: no such study, or no radiograph in it" if not found else f"{_server(client)}: {where} holds no radiograph (only SR, SEG or presentation states)")
    return instances


def instance_url(client, instance: Instance) -> str:
    """The instance's WADO-RS address (no credentials): how its report row names it."""
    return f"{_server(client)}/studies/{instance.study}/series/{instance.series}/instances/{instance.sop}"


def retrieve(client, instance: Instance) -> bytes:
    """One instance as DICOM Part 10 bytes (WADO-RS).

    Raises:
        PacsError: the retrieval failed.
    """
    import io

    import requests

    try:
        dataset = client.retrieve_instance(instance.study, instance.series, instance.sop)
    except (requests.RequestException, OSError) as error:
        raise _fail(client, f"retrieving instance {instance.sop}", error) from None
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def store(client, paths: list[str], study: str) -> list[str]:
    """Stores DICOM files into the study in one STOW-RS request.

    Returns:
        The SOP Instance UIDs the PACS reports stored.

    Raises:
        PacsError: the request failed, or the PACS reports instances it did not store.
    """
    import requests

    datasets = [pydicom.dcmread(path) for path in paths]
    try:
        response = client.store_instances(datasets, study_instance_uid=study)
    except (requests.RequestException, OSError) as error:
        raise _fail(client, f"storing {len(datasets)} results into study {study}", error) from None
    stored = [item.ReferencedSOPInstanceUID for item in getattr(response, "ReferencedSOPSequence", [])]
    failed = [item.ReferencedSOPInstanceUID for item in getattr(response, "FailedSOPSequence", [])]
    if failed:
        raise PacsError(f"{_server(client)}: the PACS refused {len(failed)} of {len(datasets)} results ({', '.join(failed)}); stored: {', '.join(stored) or 'none'}")
    return stored


def round_trip(model, client, study: str, series: str | None, settings, writer: report.ReportWriter, dicom_dir, overlay_dir=None) -> list[dict]:
    """Predicts every radiograph of a study from the PACS and stores their SR and SEG back.

    Args:
        model: a `loaded_system.LoadedSystem`.
        client: from `connect`.
        study, series: the Study Instance UID, and a Series Instance UID or None for all.
        settings: the predict settings.
        writer: the report, one row per instance (named by its WADO-RS address).
        dicom_dir: the folder the results are written to before they are stored.
        overlay_dir: overlays, or None.

    Returns:
        The rows; each stored result's row has `stored_in_pacs` true.

    Raises:
        PacsError: the search or the store failed (rows predicted so far are in the report).
    """
    from seg4reg_tf.serving import analysis

    instances = find_instances(client, study, series)
    results: list[tuple[dict, list[str]]] = []
    for number, instance in enumerate(instances, start=1):
        name = instance_url(client, instance)
        try:
            radiograph = radiographs.radiograph_from_bytes(retrieve(client, instance), name, model.max_pixels)
            overlay = pathlib.Path(overlay_dir) / f"{number:04d}-{instance.sop}.png" if overlay_dir else None
            row = analysis.predict_radiograph(model, radiograph, settings, overlay, pathlib.Path(dicom_dir) / f"{number:04d}-{instance.sop}")
        except (ValueError, OSError, PacsError) as error:
            row = report.error_row(name, str(error))
        made = [row[key] for key in ("dicom_sr", "dicom_seg") if row.get(key)]
        results.append((row, made))
    to_store = [path for _, made in results for path in made]
    failure = None
    try:
        stored = set(store(client, to_store, study)) if to_store else set()
    except PacsError as error:
        stored, failure = set(), error
    for row, made in results:
        if made:
            row["stored_in_pacs"] = all(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID in stored for path in made)
        writer.add(row)
    if failure is not None:
        raise failure
    return writer.rows
