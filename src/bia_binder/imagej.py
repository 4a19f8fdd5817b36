"""ImageJ from Python, offline: scyjava (the bridge pyimagej is built on) on the ImageJ that Debian ships.

    from bia_binder import imagej
    IJ = imagej.start()                    # the JVM with Debian's ij.jar; no Maven, no download
    imp = imagej.from_numpy(array)         # an ImagePlus (32-bit) of a 2-D numpy array
    imp.getStatistics().mean

pyimagej's ``imagej.init()`` needs ImageJ2 (resolved from Maven at run time, which sessions cannot
reach) or a local Fiji.app; Debian packages ImageJ 1 (``imagej``: ``/usr/share/java/ij.jar``), so this
starts scyjava on that jar alone. A Fiji installation the operator unpacks on the host works with
pyimagej directly: ``imagej.init("/opt/Fiji.app", mode="headless")``.
"""

from __future__ import annotations

from pathlib import Path

#: where Debian's ``imagej`` package (through ``libij-java``) puts ImageJ
DEBIAN_IJ_JAR = Path("/usr/share/java/ij.jar")


def start(jars: list[str | Path] | None = None, max_heap: str = "") -> object:
    """Start the JVM (once per kernel) with ImageJ on its class path; returns the ``ij.IJ`` class."""
    import scyjava

    if not scyjava.jvm_started():
        jars = [Path(j) for j in (jars or [DEBIAN_IJ_JAR])]
        missing = [str(j) for j in jars if not j.is_file()]
        if missing:
            raise FileNotFoundError(f"ImageJ not found at {', '.join(missing)}: the host needs Debian's imagej package")
        scyjava.config.set_java_constraints(fetch="never")  # its default downloads a JDK: use the host's
        scyjava.config.endpoints.clear()  # no Maven resolution: only the jars given
        for jar in jars:
            scyjava.config.add_classpath(str(jar))
        scyjava.config.add_option("-Djava.awt.headless=true")
        if max_heap:
            scyjava.config.add_option(f"-Xmx{max_heap}")
        scyjava.start_jvm()
    return scyjava.jimport("ij.IJ")


def from_numpy(array, title: str = "image") -> object:
    """A 32-bit ``ImagePlus`` holding the 2-D ``array``."""
    import numpy as np
    import scyjava

    start()
    data = np.ascontiguousarray(array, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"from_numpy takes a 2-D array, not {data.ndim}-D")
    height, width = data.shape
    FloatProcessor = scyjava.jimport("ij.process.FloatProcessor")
    ImagePlus = scyjava.jimport("ij.ImagePlus")
    import jpype

    pixels = jpype.JArray(jpype.JFloat)(data.ravel().tolist())
    return ImagePlus(title, FloatProcessor(width, height, pixels))
