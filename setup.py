# The cffi extension is declared here because cffi_modules is a setup() keyword
# that pyproject.toml cannot express yet. Everything else lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["src/ipckit/_ffi/_build.py:ffibuilder"])
