"""Keep the container tests out of the unit suite (`make test`).

They build an image and run it (minutes); they are collected only when this
folder, or a file in it, is named on the command line, as
`make test-container` and `.ci/run` do: `pytest tests/container`.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path, config):
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    if any(path == HERE or HERE in path.parents for path in named):
        return None
    return True
