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
    package_data={"a2gen_hf": ["metrics/*/*.py", "py.typed"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "transformers>=5.0,<6",
        "datasets>=3.0",
        "accelerate>=1.0",
        "safetensors>=0.4",
        "huggingface-hub>=1.0",
        "evaluate>=0.4",
        "pyarrow>=15",
        "numpy>=1.24",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "scikit-learn>=1.3",
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-xdist>=3", "hypothesis>=6.100", "ruff>=0.6"],
    },
    entry_points={"console_scripts": ["a2gen=a2gen_hf.cli:main"]},
)
