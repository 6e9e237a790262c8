from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec((Path(__file__).parent / "src" / "a2gen_hf" / "version.py").read_text(), version)

setup(
    name="a2gen_hf",
    version=version["__version__"],
    description="A2Gen (Action-Aware Generative Sequence Network) for Hugging Face transformers",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    include_package_data=True,
    package_data={"a2gen_hf": ["metrics/*/*.py", "py.typed", "recipes/*.yaml"]},
    python_requires=">=3.11",  # transformers 5.24 needs Python 3.11
    # A floor with a comment is set by what the comment names.
    install_requires=[
        "torch>=2.6",  # transformers 5 runs its PyTorch models only on torch >= 2.6
        "transformers>=5.24,<6",  # GenerateDecoderOnlyOutput.cache (generation_a2gen.py); 5.17 has no such field
        "datasets>=4.0",  # datasets.List (the simulator's features); 3.6 has no List
        "accelerate>=1.1",  # transformers.Trainer (A2GenTrainer) refuses older Accelerate
        "safetensors>=0.4",
        "huggingface-hub>=1.0",  # huggingface_hub.errors, `hf auth login`; transformers 5.24 itself needs >= 1.31
        "evaluate>=0.4",
        "pyarrow>=20",  # pyarrow.json.open_json (streaming JSONL logs), new in 20.0
        "numpy>=1.24",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "scikit-learn>=1.3",
        "threadpoolctl>=2.0",  # one BLAS thread per regression fit (simple_baselines.fit_each); scikit-learn needs it too
        "xxhash>=3.0",  # content fingerprints of prepared data (data/folder.py); datasets needs it too
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-xdist>=3", "hypothesis>=6.100", "ruff>=0.6"],
        "tracking": ["tensorboard>=2.14"],  # a2gen train --report-to tensorboard (Accelerate's tracker)
        # TorchRec's CPU kernels and its dependencies; torchrec itself goes in with `pip install --no-deps
        # torchrec==1.8.0` (it requires the CUDA build `fbgemm-gpu`), see docs/torchrec.md. 1.9.x / 1.7.0 fail to
        # load fbgemm's libraries with torch 2.13.
        "torchrec": [
            "fbgemm-gpu-cpu==1.8.0",
            "tensordict==0.15.3",
            "torchmetrics==1.0.3",
            "pyre-extensions==0.0.32",
            "typing_inspect==0.9.0",
            "mypy_extensions>=1.0",
            "lightning-utilities==0.15.3",
            "pyvers==0.2.3",
        ],
    },
    entry_points={"console_scripts": ["a2gen=a2gen_hf.cli:main"]},
)
