from setuptools import setup
setup(name='rootpkg', version='1.0', py_modules=['rootpkg'])
