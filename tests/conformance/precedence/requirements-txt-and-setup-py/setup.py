from setuptools import setup
setup(name='ownpkg', version='1.0', py_modules=['ownpkg'])
