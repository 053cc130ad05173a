"""Shared fixtures of the integration tests: each experiment's ``--quick`` run, made once."""

import shutil
from pathlib import Path

import pytest

from tests.integration.test_end_to_end import ROOT, load_experiment


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """``quick_run(script, into=None) -> (module, out)``: ``experiments/<script>.py --quick
    --quiet`` (plus ``--plot`` where its usage line asks for it), run once per test session.

    The contract test and the tests of what a script's table says read the same run, so each
    script trains once. ``out`` is the shared folder, to be read only; with ``into`` (a folder
    that does not exist yet) it is a copy there, for a test that deletes or rewrites files.
    """
    done: dict[str, tuple[object, Path]] = {}

    def run(script: str, into: Path | None = None):
        if script not in done:
            module = load_experiment(ROOT / "experiments" / f"{script}.py")
            out = tmp_path_factory.mktemp(script) / "out"
            plot = ["--plot"] if "[--quick [--plot]]" in (module.__doc__ or "") else []
            assert module.main(["--quick", "--quiet", "--out", str(out), *plot]) == 0
            done[script] = (module, out)
        module, out = done[script]
        if into is None:
            return module, out
        shutil.copytree(out, into)
        return module, into

    return run
