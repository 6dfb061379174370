"""Ships ``sql/`` inside the package as ``memory_pipeline.sql``; pyproject.toml holds the rest.

The migrations stay at the top of the repository (the layout names them); setuptools' package
discovery in pyproject.toml cannot map a folder outside the package, so it happens here.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["memory_pipeline*"], exclude=["memory_pipeline_tests*"]),
        "memory_pipeline.sql",
    ],
    package_dir={"memory_pipeline.sql": "sql"},
)
