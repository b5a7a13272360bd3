"""One generated history, deployed from empty and validated in-process, then broken on purpose and validated again.

What a deploy of a history must show: every migration applies (runbook's apply, and psycopg applying the same
files on a twin database, which must agree), no test fails (a test may be not run, with its reason), and each
defect injected afterwards into an object a passing test vouched for (a NOT NULL, a foreign key, a unique
constraint or index, an index, an extension) makes a test about that object fail. The phases run as
`runbook deploy` runs them (preflight, apply, validate of the release), without the notebooks, so dozens of
histories fit in a minute; `runbook validate N` is run per migration after the defects, with the same rules.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from generated.histories import History, generate, q

from runbook_lib.execution.session import open_session
from runbook_lib.phases import apply, preflight, validate

WANTED_EXTENSIONS = ("citext", "vector", "pg_trgm", "pgcrypto", "uuid-ossp")


def available_extensions(url: str) -> tuple[str, ...]:
    with psycopg.connect(url) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
    return tuple(e for e in WANTED_EXTENSIONS if e in names)


@dataclass
class Defect:
    """A change made by hand after the deploy, and the test that vouched for the object it breaks."""

    sql: str
    test: str


@dataclass
class Outcome:
    seed: int
    migrations: int
    ran: int = 0
    passed: int = 0
    not_run: int = 0
    false_failures: list[str] = field(default_factory=list)  # tests that failed on a correct deploy
    defects: list[Defect] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # defects no test caught
    error: str = ""  # the deploy itself failed (a generator or runbook defect): the history's seed reproduces it

    @property
    def ok(self) -> bool:
        return not (self.false_failures or self.missed or self.error)

    def describe(self) -> str:
        parts = [
            f"seed {self.seed}: {self.passed}/{self.ran} passed, {self.not_run} not run, "
            f"{len(self.defects)} defect(s) injected"
        ]
        if self.error:
            parts.append(f"deploy failed: {self.error}")
        parts += [f"false failure: {f}" for f in self.false_failures]
        parts += [f"defect not caught: {m}" for m in self.missed]
        return "; ".join(parts)


def psql_like_apply(url: str, history: History) -> None:
    """Each file in its own transaction, as psql -1 -f would: the history itself must be valid SQL."""
    with psycopg.connect(url, autocommit=True) as conn:
        for name, text in history.migrations:
            try:
                with conn.transaction():
                    conn.execute(text.encode())  # several statements, simple query protocol
            except psycopg.Error as exc:
                raise AssertionError(f"{name} of seed {history.seed} does not apply: {exc}\n{text}") from exc


# What a passing derived test's name says it vouches for, and how to break that object by hand.
_BREAKERS = [
    (
        re.compile(r"^(\w+)\.(\w+) is NOT NULL \(derived"),
        lambda m: f"ALTER TABLE {q(m[1])} ALTER COLUMN {q(m[2])} DROP NOT NULL",
    ),
    (re.compile(r"^(\w+) FOREIGN KEY (\w+) \("), lambda m: f"ALTER TABLE {q(m[1])} DROP CONSTRAINT {q(m[2])}"),
    (re.compile(r"^Index (\w+) is a valid (unique )?index on (\w+)"), lambda m: f"DROP INDEX {q(m[1])} CASCADE"),
    (re.compile(r"^Extension ([\w-]+) is installed"), lambda m: f"DROP EXTENSION {q(m[1])} CASCADE"),
]


def _results(result) -> list:
    return [t for r in getattr(result, "results", [result]) for t in r.tests]


def validate_each(url: str, folder: Path, work: Path, migrations: int) -> list:
    """`runbook validate N` for every migration of the history, in-process: each one's test results."""
    found = []
    for number in range(1, migrations + 1):
        session = open_session(number, migrations_dir=folder, reports_dir=work / "reports", database_url=url)
        found += _results(validate.run(session))
    return found


def run(
    url: str, seed: int, work: Path, *, migrations: int = 8, defects: int = 3, extensions: tuple[str, ...] = ()
) -> Outcome:
    """Deploy history `seed` from empty on `url` (an empty database), validate, inject defects, validate again."""
    history = generate(seed, migrations, extensions)
    folder = history.write(work / f"history-{seed}")
    outcome = Outcome(seed, migrations)
    release = open_session("pending", migrations_dir=folder, reports_dir=work / "reports", database_url=url)
    try:
        preflight.run(release)
        apply.run(release, validate_each=True)  # as `runbook deploy` runs it
    except Exception as exc:  # reported with the seed, the test asserts on it
        outcome.error = f"{type(exc).__name__}: {exc}"
        return outcome
    tests = _results(validate.run(release))
    outcome.ran = sum(1 for t in tests if t.ran)
    outcome.passed = sum(1 for t in tests if t.passed)
    outcome.not_run = sum(1 for t in tests if not t.ran)
    outcome.false_failures = [f"{t.name}: expected {t.expectation}, got {t.observed}" for t in tests if t.failed]
    if outcome.false_failures:
        return outcome
    # `runbook validate N` of each migration now, with every later one applied: its expectations that later
    # migrations changed are left to them (sql.expect.superseded), so nothing fails either
    tests = validate_each(url, folder, work, migrations)
    outcome.false_failures = [
        f"validate {t.name}: expected {t.expectation}, got {t.observed}" for t in tests if t.failed
    ]
    if outcome.false_failures:
        return outcome
    # Break objects that passing tests of `runbook validate N` vouch for in the final state (the release's vouched
    # for the state right after each migration, which later ones may have changed on purpose), one of each kind
    # where there is one, chosen by the seed.
    rng = random.Random(seed)
    candidates: dict[int, list[Defect]] = {}
    for t in tests:
        if not t.passed:
            continue
        for kind, (pattern, breaker) in enumerate(_BREAKERS):
            found = pattern.match(t.name)
            if found:
                candidates.setdefault(kind, []).append(Defect(breaker(found), t.name))
    kinds = sorted(candidates)
    rng.shuffle(kinds)
    with psycopg.connect(url, autocommit=True) as conn:
        for kind in kinds[:defects]:
            found = candidates[kind]
            rng.shuffle(found)
            for defect in found:  # the first the server takes (a primary key's column keeps its NOT NULL)
                try:
                    conn.execute(defect.sql.encode())
                except psycopg.Error:
                    continue
                outcome.defects.append(defect)
                break
    failing = {t.name for t in validate_each(url, folder, work, migrations) if t.failed}
    outcome.missed = [f"{d.sql} (vouched for by '{d.test}')" for d in outcome.defects if d.test not in failing]
    return outcome
