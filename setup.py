"""Build hook: generate the protobuf modules from protos/ before packaging them."""

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithProtos(build_py):
    """Runs tools/gen_protos.py so a wheel never ships stale or missing stubs."""

    def run(self) -> None:
        generator = runpy.run_path(str(Path(__file__).parent / "tools" / "gen_protos.py"))
        generator["generate"]()
        super().run()


setup(cmdclass={"build_py": BuildWithProtos})
