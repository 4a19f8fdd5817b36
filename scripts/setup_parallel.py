"""Runs ``setup.py`` (the current directory's) with one extension's sources compiled on every core.

distutils compiles the sources of an extension one after another; ``build_ext --parallel`` spreads
only whole extensions, and zeroc-ice is a single extension of some 200 C++ files (about 5 minutes
of one core). Nothing in setuptools does this, hence these few lines: the compiler's own
``_compile`` of each object runs on a thread pool (each call is a compiler subprocess).
"""

import os
import runpy
import sys
from concurrent.futures import ThreadPoolExecutor

import setuptools  # noqa: F401  (first: it puts its own distutils in place)
from distutils.ccompiler import CCompiler


def compile_in_parallel(self, sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                        extra_preargs=None, extra_postargs=None, depends=None):  # fmt: skip
    macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
        output_dir, macros, include_dirs, sources, depends, extra_postargs
    )
    cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

    def compile_one(obj):
        source, ext = build[obj]
        self._compile(obj, source, ext, cc_args, extra_postargs, pp_opts)

    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:  # the cores this process may use
        list(pool.map(compile_one, [obj for obj in objects if obj in build]))
    return objects


CCompiler.compile = compile_in_parallel
sys.argv = ["setup.py", *sys.argv[1:]]
runpy.run_path("setup.py", run_name="__main__")
