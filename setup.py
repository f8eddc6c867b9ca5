"""Installs seg4reg_tf: Seg4Reg+ (Lin et al., MICCAI 2021) in TensorFlow 2.21 / Keras 3."""

from setuptools import find_packages, setup

setup(
    name="seg4reg_tf",
    version="0.1.0",
    description=(
        "Cobb angles of scoliosis from spine X-rays: spine segmentation and angle "
        "regression trained by triangle consistency learning (Seg4Reg+)."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["seg4reg_tf", "seg4reg_tf.*"]),
    # the viewer's page, read by seg4reg_tf/serving/viewer_app.py
    package_data={"seg4reg_tf.serving": ["viewer_page.html"]},
    python_requires=">=3.10,<3.14",
    install_requires=[
        # The networks, tf.data pipeline and SavedModel export.
        "tensorflow>=2.21,<2.22",
        "keras>=3.12,<4",
        "numpy>=1.26",
        # Training logs (no longer installed with TensorFlow 2.21).
        "tensorboard>=2.20,<3",
        # Reading the AASCE .mat landmark files (MATLAB 5 format).
        "scipy>=1.11",
        # The YAML configs in configs/.
        "pyyaml>=6.0",
        # Polygon rasterisation of spine masks, image encoding, CLAHE.
        "opencv-python-headless>=4.8",
        # Evaluation figures (seg4reg_tf.visualize).
        "matplotlib>=3.8",
        # DICOM radiographs (seg4reg_tf.data.dicom).
        "pydicom>=3,<4",
        # DICOM SR (TID 1500) and SEG results of DICOM inputs (seg4reg_tf.serving.dicom_results):
        # the maintained builder of standard-conformant SR and SEG objects on pydicom.
        "highdicom>=0.28,<0.29",
        # The PACS round trip over DICOMweb, QIDO-RS / WADO-RS / STOW-RS (seg4reg_tf.serving.pacs).
        "dicomweb-client>=0.61,<0.62",
        # The viewer page (seg4reg_tf.viewer): Flask for its routes and request limits, served
        # by waitress, a pure-Python multi-threaded WSGI server fit for use beyond development.
        "flask>=3.1,<4",
        "waitress>=3,<4",
        # gRPC client of TF Serving's PredictionService (seg4reg_tf.serving_client).
        "tensorflow-serving-api>=2.21,<2.22",
    ],
    extras_require={
        # Batch scoring of archives on Apache Beam (`python -m seg4reg_tf.batch`): Beam's
        # RunInference, its file systems and its runners (DirectRunner, Dataflow, Flink, Spark).
        "batch": ["apache-beam>=2.77,<3"],
        # pytest-xdist: `make test` runs two workers (tracing and eager steps are largely
        # single-threaded, so two workers on two cores finish sooner than one).
        # pytest below 9.2: with 9.2, pytest-xdist 3.8's --dist loadgroup groups nothing (its
        # issue #1386), and tests/conftest.py refuses to run rather than build the shared
        # fixtures on both workers.
        # hypothesis: the fuzz properties; pillow: the EXIF-orientation reference; ruff: make lint;
        # playwright: drives Debian's chromium (installed by .ci/run) through the viewer page.
        "test": ["pytest>=8,<9.2", "pytest-xdist>=3.5", "hypothesis>=6.100", "pillow>=10", "ruff>=0.6", "playwright>=1.60,<2"],
    },
)
