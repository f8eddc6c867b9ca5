"""A real PACS for tests: Orthanc (Debian packages `orthanc` and `orthanc-dicomweb`,
installed by .ci/run) with its DICOMweb plugin, in a temporary storage folder.

Orthanc 1.10 has no setting for the address it binds to, so it listens on every interface;
with `RemoteAccessAllowed` false it answers only clients on loopback, it asks for a
password, and its DICOM port is off. It runs under `timeout`, so it stops by itself even if
the test process is killed; the fixture stops it at once when the tests end.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.request

PLUGIN = pathlib.Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "seg4reg", "not-a-real-secret-7f3a"
LIFETIME_SECONDS = 1200


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_orthanc(folder: pathlib.Path):
    """Starts Orthanc with its storage in `folder`; yields its DICOMweb root URL.

    Raises:
        AssertionError: Orthanc or its DICOMweb plugin is missing, or does not answer
            within 60 s (the message says which, with Orthanc's log).
    """
    binary = shutil.which("Orthanc")
    assert binary, "Orthanc not found: install Debian's orthanc and orthanc-dicomweb (.ci/run does)"
    assert PLUGIN.exists(), f"{PLUGIN} not found: install Debian's orthanc-dicomweb (.ci/run does)"
    port = free_port()
    config = {
        "Name": "seg4reg-test", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "HttpPort": port, "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "DicomServerEnabled": False, "Plugins": [str(PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpTimeout": 30, "StableAge": 1,
    }  # fmt: skip
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")
    process = subprocess.Popen(["timeout", str(LIFETIME_SECONDS), binary, str(path)], stdout=log, stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                request = urllib.request.Request(f"{root}/system")
                handler = urllib.request.HTTPBasicAuthHandler(urllib.request.HTTPPasswordMgrWithDefaultRealm())
                handler.passwd.add_password(None, root, USER, PASSWORD)
                urllib.request.build_opener(handler).open(request, timeout=2).read()
                break
            except OSError:
                assert process.poll() is None, f"Orthanc exited ({process.returncode}): {(folder / 'orthanc.log').read_text()[-2000:]}"
                assert time.monotonic() < deadline, f"Orthanc did not answer on {root} in 60 s: {(folder / 'orthanc.log').read_text()[-2000:]}"
                time.sleep(0.2)
        yield f"{root}/dicom-web"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
