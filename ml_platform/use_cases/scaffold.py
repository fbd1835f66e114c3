"""``ml-platform new-use-case NAME``: a folder that runs end to end before it is edited.

Why a scaffold: a team's first use case should start from a declaration that loads, trains
and serves, then be edited towards its own columns, instead of starting from a blank file.
The template (``_template/``) declares string entity keys, minute windows, a binary label
known a day later and the files source, with sample daily files to run on at once.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

from ml_platform.use_cases.loader import USE_CASE_FILE, UseCase, UseCaseError, load_use_case
from ml_platform.use_cases.spec import NAME_PATTERN, camel_name

TEMPLATE_DIR = Path(__file__).resolve().parent / "_template"
#: template file -> the file it becomes in the new folder (``.tmpl`` files are filled in)
TEMPLATE_FILES = {
    "use_case.yaml.tmpl": USE_CASE_FILE,
    "service.py.tmpl": "service.py",
    "README.md.tmpl": "README.md",
    "sample_data.py": "sample_data.py",
}
SAMPLE_DIR = "data"
DEFAULT_SAMPLE_DAYS = 21
DEFAULT_START = date(2025, 1, 1)


def scaffold_use_case(
    name: str,
    parent: Path,
    *,
    start: date = DEFAULT_START,
    sample_days: int = DEFAULT_SAMPLE_DAYS,
) -> UseCase:
    """Write ``parent/name`` from the template with ``sample_days`` days of sample files,
    and load it (the scaffold is checked like any folder). Refuses an existing folder."""
    if not NAME_PATTERN.match(name):
        raise UseCaseError(
            f"{name!r}: a use-case name uses lower-case letters, digits and _ "
            "(starting with a letter)"
        )
    if sample_days < 1:
        raise ValueError(f"sample_days: must be >= 1, got {sample_days}")
    folder = Path(parent) / name
    if folder.exists():
        raise FileExistsError(f"{folder}: already exists; choose another name or folder")
    end = start + timedelta(days=sample_days - 1)
    words = {
        "name": name,
        "class_name": camel_name(name),  # the BentoML service class of the use case
        "start": start.isoformat(),
        "end": end.isoformat(),
        "env_prefix": f"{name.upper()}_",
        "parent": str(Path(parent).resolve()),
    }
    folder.mkdir(parents=True)
    try:
        for source, target in TEMPLATE_FILES.items():
            text = (TEMPLATE_DIR / source).read_text()
            if source.endswith(".tmpl"):
                text = text.format(**words)
            (folder / target).write_text(text)
        use_case = load_use_case(folder)
        _write_sample(use_case, start, sample_days)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return use_case


def _write_sample(use_case: UseCase, start: date, days: int) -> None:
    """Run the folder's own sample writer without leaving a ``__pycache__`` in the folder
    (the scaffold holds exactly its files)."""
    import sys

    previous = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        use_case.hook("sample_data.py:write_sample")(use_case.folder / SAMPLE_DIR, start, days)
    finally:
        sys.dont_write_bytecode = previous
