from setuptools import find_packages, setup

setup(name="dummy", version="1.0.0", packages=find_packages(), install_requires=["six==1.16.0"])
