"""Lines a test fixture adds to pytest's terminal summary, also from xdist workers.

A worker has no terminal: its lines travel to the controller in the worker's output
(``workeroutput``) when it finishes, and the controller prints them with its own.
"""

from __future__ import annotations

#: This process's lines, in the order they were added.
LINES: list[str] = []

#: Key of the lines in an xdist worker's output.
WORKER_OUTPUT_KEY = "ml_platform_summary_lines"


def add_line(text: str) -> None:
    """Show ``text`` in the terminal summary of the run."""
    LINES.append(text)
