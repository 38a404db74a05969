"""Only one thing pyproject.toml cannot say: benchmarks/ ships as ``ser_bench._suites`` for its
suites (``*.toml``, package data), not for its scripts (``*.py``: speed and table scripts run
from a checkout), which setuptools would otherwise pack as modules of that package."""
from setuptools import setup
from setuptools.command.build_py import build_py

SUITES = "ser_bench._suites"


class BuildPy(build_py):
    def find_package_modules(self, package, package_dir):  # noqa: ANN001, ANN201
        return [] if package == SUITES else super().find_package_modules(package, package_dir)


setup(cmdclass={"build_py": BuildPy})
