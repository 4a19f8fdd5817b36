from setuptools import setup
setup(name='envpkg', version='1.0', py_modules=['envpkg'])
