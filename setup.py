"""Maps the three top-level folders onto the `pullback` import namespace."""

from setuptools import find_packages, setup

ROOTS = {"pullback": "runtime", "pullback.dsl": "dsl", "pullback.compiler": "compiler"}
packages = []
for name, folder in ROOTS.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]
setup(package_dir=ROOTS, packages=packages)
