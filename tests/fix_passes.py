"""Three servers, one suite: which tests each pass runs (`--suite-pass`, set by scripts/test_suite.py).

The server-dependent tests run on the embedded PostgreSQL 18 and on the system's PostgreSQL (15 on Debian).
The tests marked `kernel` (notebooks, the CLI, reports, fleets, the wheel) behave the same on any server and
run once: most of them in the first pass, those under SECOND_PASS_KERNEL in the second, so the two passes,
run side by side, take about as long as each other. The third pass, on the wheel's PostgreSQL 16, runs only
the tests marked `versions` (behaviour that differs between server versions or roles; a `pg` test counts as
one, tests/fix_db.py), kernel or not. With one server there is one pass: everything.

The deploys of the real histories (tests/test_history_corpora.py, tests/test_layout_corpora.py) take the start
of each history in every pass; `--whole-corpora` makes them take all of it (`make sweep-corpora`,
benchmarks/corpora_sweep.py), `--corpora-limit N` its first N migrations (that sweep's smoke run).
"""

from __future__ import annotations

import pytest

SECOND_PASS_KERNEL = ("tests/fleet/", "tests/test_packaging.py", "tests/test_benchmarks.py")
ALL, FIRST, SECOND, THIRD = "all", "first", "second", "third"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--suite-pass",
        choices=(ALL, FIRST, SECOND, THIRD),
        default=ALL,
        help="all (default): every test; first: all but the kernel tests the second pass takes; "
        "second (the second server): the server-dependent tests and those kernel tests; "
        "third (PostgreSQL 16): only the tests marked `versions`",
    )
    parser.addoption(
        "--whole-corpora",
        action="store_true",
        help="the real histories' deploy tests deploy each history complete (make sweep-corpora), "
        "not the start of it that `make test` takes",
    )
    parser.addoption(
        "--corpora-limit",
        type=int,
        metavar="N",
        help="the real histories' deploy tests deploy the first N migrations of each history "
        "(the sweep's smoke run: benchmarks/corpora_sweep.py --limit N)",
    )


def _second_takes(item: pytest.Item) -> bool:
    return item.nodeid.startswith(SECOND_PASS_KERNEL)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    which = config.getoption("--suite-pass")
    if which == ALL:
        return
    kernel = {id(item) for item in items if item.get_closest_marker("kernel") is not None}
    if which == FIRST:
        keep = [i for i in items if not (id(i) in kernel and _second_takes(i))]
    elif which == SECOND:
        keep = [i for i in items if id(i) not in kernel or _second_takes(i)]
    else:
        keep = [i for i in items if i.get_closest_marker("versions") is not None]
    dropped = [i for i in items if i not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
