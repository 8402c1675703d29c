"""Mutation testing of the compute path with mutmut 3 (configured in pyproject.toml, [tool.mutmut]).

mutmut copies the package and tests/ into ``mutants/``, plants one small change at a time in the
compute-path modules and runs the tests that cover the changed function; a mutant the tests do
not notice "survives". This script runs every mutant or a fixed sample of them, then prints the
figures: mutants generated, tested, killed, survived (each listed), and the mutation score
``killed / (tested - equivalent)``, where ``--equivalent`` names survivors judged to change no
behaviour. It exits 1 when the score is below ``--min-score``.

    python scripts/mutation.py --full --quick --fresh   # the measured run: every mutant, NumPy tests (~25 min)
    python scripts/mutation.py --full                   # every mutant, every backend's tests (hours on 2 cores)
    python scripts/mutation.py --sample 60 --quick      # CI: 60 mutants drawn with --seed 0 (~2 min)
    python scripts/mutation.py --since origin/main --sample 40   # only mutants of files changed since a ref
    python scripts/mutation.py --module mlp_xp/init.py  # every mutant of one module
    mutmut show <name>; mutmut browse                   # inspect a survivor afterwards

Tests marked ``subprocess`` (MPI launches, the CLI under signals, the example scripts) are never
selected: they take seconds each (pyproject.toml's [tool.mutmut] selection). ``--quick`` runs the
tests on the NumPy backend only and leaves out the slowest test files (QUICK_PYTEST_ARGS: the
compiled steps, scikit-learn's estimator checks, the fuzzers), and so the mutants of
``compiled.py``, which only those compile tests reach; a mutant then runs in about a second,
which is what bounds a CI run. Results of a quick run and of a full one are never mixed:
switching mode starts from a fresh ``mutants/``.

Run from the repository root with mutmut 3.8 installed (``pip install -e ".[dev]"``).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "tests" / "mutation_equivalent.txt"
EQUIVALENT_LINE = re.compile(r"(?P<name>\S+)\s+`(?P<change>[^`]+)`\s+#\s*\S")
MODE_FILE = ROOT / "mutants" / "mlp_xp-mode.txt"
QUICK_PYTEST_ARGS = (
    "--backend numpy --ignore=tests/test_compiled.py --ignore=tests/test_compiled_reuse.py"
    " --ignore=tests/test_sklearn.py --ignore=tests/test_fuzz.py"
)
QUICK_SKIPS = (Path("mlp_xp/compiled.py"),)
"""Modules whose mutants only the tests that ``--quick`` leaves out can reach."""


def mutant_changes(path: Path) -> dict[str, list[str]]:
    """For each mutant of ``path`` (by full name), the lines of its function it changes, as
    ``mutmut show`` prints them: ``"- <line>"`` removed, ``"+ <line>"`` put in, indents stripped.
    mutmut plants every mutant as a copy of its function, ``<function>__mutmut_<n>`` beside
    ``<function>__mutmut_orig``."""
    from mutmut.mutation.file_mutation import mutate_file_contents
    from mutmut.utils.format_utils import get_mutant_name

    mutated = mutate_file_contents(str(path), path.read_text(encoding="utf-8"))
    lines = mutated.code.splitlines()
    body = {node.name: lines[node.lineno - 1:node.end_lineno] for node in ast.walk(ast.parse(mutated.code))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    changes = {}
    for name in mutated.mutant_names:
        orig = name.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"
        mutant = [line.replace(f"def {name}(", f"def {orig}(", 1) for line in body[name]]
        diff = difflib.unified_diff(body[orig], mutant, lineterm="", n=0)
        changes[get_mutant_name(path, name)] = [f"{line[0]} {line[1:].strip()}" for line in diff
                                                if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    return changes


def mutated_files() -> list[Path]:
    """The files [tool.mutmut] mutates, relative to the repository root."""
    from mutmut.configuration import config

    files = [path.relative_to(ROOT) for source in config().source_paths for path in (ROOT / source).rglob("*.py")]
    return sorted(path for path in files if config().should_mutate(path))


def changed_since(ref: str) -> set[Path]:
    """Files changed between ``ref`` and the working tree."""
    command = ["git", "diff", "--name-only", ref, "--"]
    out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return {Path(line) for line in out.stdout.splitlines() if line}


def read_equivalent(path: Path) -> dict[str, str]:
    """The entries of ``path``: mutant name -> the code its change puts in, or ``- <code>`` it
    removes, one per line as ``<name>  `<code>`  # <reason>``; lines starting ``#`` are comments. The
    code pins each entry to its mutant, since mutmut renumbers mutants as a function changes:
    ``check_equivalent`` finds an entry whose number now names another mutant."""
    if not path.is_file():
        return {}
    entries = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = EQUIVALENT_LINE.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected '<mutant name>  `<code>`  # <reason>', got {line!r}")
        entries[match["name"]] = match["change"]
    return entries


def check_equivalent(entries: dict[str, str], changes: dict[str, list[str]]) -> list[str]:
    """Problems with ``entries`` (from ``read_equivalent``) against ``changes`` (from
    ``mutant_changes``, every mutated file): a name mutmut no longer generates, or a mutant whose
    changed lines do not hold the code its entry quotes (its number moved to another change).
    The code is looked for in the lines put in, or in the lines removed where it starts ``- ``."""
    problems = []
    for name, code in entries.items():
        sign = "- " if code.startswith("- ") else "+ "
        if name not in changes:
            problems.append(f"{name}: no such mutant")
        elif not any(line.startswith(sign) and code.removeprefix("- ") in line[2:] for line in changes[name]):
            problems.append(f"{name}: its change is {changes[name]}, not `{code}`")
    return problems


def run_mutmut(names: list[str] | None, max_children: int, quick: bool) -> None:
    """``mutmut run`` on ``names`` (all mutants when None), one thread per worker: OpenMP (torch's
    libgomp) deadlocks in a forked worker once the parent has used a thread team; torch.compile
    compiles in the worker itself instead of a pool of processes. ``quick`` narrows the tests
    through ``PYTEST_ADDOPTS``, which the pytest inside mutmut reads."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", TORCHINDUCTOR_COMPILE_THREADS="1")
    if quick:
        env["PYTEST_ADDOPTS"] = QUICK_PYTEST_ARGS
    command = ["mutmut", "run", "--max-children", str(max_children), *(names or [])]
    done = subprocess.run(command, cwd=ROOT, env=env)
    if done.returncode != 0:
        sys.exit(f"mutmut run failed with exit code {done.returncode}")


def statuses() -> dict[str, str]:
    """Every mutant's status after a run, from ``mutmut results --all true``."""
    out = subprocess.run(["mutmut", "results", "--all", "true"], cwd=ROOT, check=True, capture_output=True, text=True)
    return dict(re.findall(r"^\s+(\S+): (.+)$", out.stdout, flags=re.M))


def use_mode(mode: str, fresh: bool) -> None:
    """Start from an empty ``mutants/`` when asked, or when its results come from the other mode."""
    if fresh or (MODE_FILE.is_file() and MODE_FILE.read_text().strip() != mode):
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    MODE_FILE.parent.mkdir(exist_ok=True)
    MODE_FILE.write_text(mode + "\n")


def score(counts: dict[str, int], equivalent: int) -> float:
    """Killed (timeouts count as killed, as mutmut scores them) out of the mutants tested, less
    the survivors judged equivalent; a mutant no test reaches counts as not killed."""
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    tested = sum(counts.values()) - counts.get("not checked", 0) - counts.get("skipped", 0)
    return 100.0 * killed / max(tested - equivalent, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--full", action="store_true", help="every mutant of the compute path")
    which.add_argument("--sample", type=int, metavar="N", help="a fixed random sample of N mutants")
    which.add_argument("--module", type=Path, help="every mutant of one module, e.g. mlp_xp/init.py")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--since", metavar="REF", help="only mutants of files changed since this git ref")
    p.add_argument("--max-children", type=int, default=os.cpu_count() or 2, help="parallel mutant workers")
    p.add_argument("--min-score", type=float, default=90.0, help="fail below this mutation score in %% (default 90)")
    p.add_argument("--equivalent", type=Path, default=EQUIVALENT, help="survivors judged equivalent (one per line)")
    p.add_argument("--fresh", action="store_true", help="delete mutants/ first (results of earlier runs)")
    p.add_argument("--quick", action="store_true", help="NumPy-only tests without the slowest files (CI)")
    args = p.parse_args()
    os.chdir(ROOT)
    use_mode("quick" if args.quick else "full", args.fresh)

    changes = {path: mutant_changes(path) for path in mutated_files()}
    names_by_file = {path: sorted(by_name) for path, by_name in changes.items()}
    equivalent = read_equivalent(args.equivalent)
    problems = check_equivalent(equivalent, {name: c for by_name in changes.values() for name, c in by_name.items()})
    if problems:  # before the run, which takes minutes
        sys.exit(f"{args.equivalent.relative_to(ROOT)} is out of date (mutmut renumbers the mutants of a "
                 "function that changed):\n  " + "\n  ".join(problems))
    generated = sorted(name for names in names_by_file.values() for name in names)
    files = [f for f in names_by_file if not (args.quick and f in QUICK_SKIPS)]
    if args.module is not None:
        if args.module not in names_by_file:
            sys.exit(f"{args.module} is not mutated; mutated files: {', '.join(map(str, names_by_file))}")
        files = [args.module]
    if args.since is not None:
        changed = changed_since(args.since)
        files = [f for f in files if f in changed]
        if not files:
            print(f"no mutated file changed since {args.since}: nothing to test")
            return
    selected = sorted(name for path in files for name in names_by_file[path])
    if args.sample is not None and args.sample < len(selected):
        selected = sorted(random.Random(args.seed).sample(selected, args.sample))

    started = time.perf_counter()
    if args.full and args.since is None and not args.quick:
        run_mutmut(None, args.max_children, args.quick)
    elif args.sample is None:  # whole modules: one pattern each
        run_mutmut([".".join(path.with_suffix("").parts) + ".*" for path in files], args.max_children, args.quick)
    else:
        run_mutmut(selected, args.max_children, args.quick)
    seconds = time.perf_counter() - started

    status = statuses()
    results = {name: status.get(name, "not checked") for name in selected}
    survivors = sorted(name for name, value in results.items() if value == "survived")
    print(f"\nmutation testing: {len(generated)} mutants generated in {len(names_by_file)} files, "
          f"{len(selected)} selected, {seconds:.0f} s" + (" (quick: NumPy tests, slow files left out)" * args.quick))
    print(f"  {'module':28} {'mutants':>7} {'killed':>6} {'timeout':>7} {'survived':>8} {'equiv.':>6} "
          f"{'no tests':>8} {'score':>6}")
    module_of = {name: path for path in files for name in names_by_file[path]}
    for path in [*files, None]:  # each module, then the total
        names = [name for name in selected if path is None or module_of[name] == path]
        if not names:
            continue
        counts: dict[str, int] = {}
        for name in names:
            counts[results[name]] = counts.get(results[name], 0) + 1
        same = sum(1 for name in names if results[name] == "survived" and name in equivalent)
        print(f"  {str(path or 'total'):28} {len(names):7} {counts.get('killed', 0):6} {counts.get('timeout', 0):7} "
              f"{counts.get('survived', 0) - same:8} {same:6} {counts.get('no tests', 0):8} "
              f"{score(counts, same):5.1f}%")
    for name in survivors:
        print(f"  survived: {name}" + ("  (equivalent)" if name in equivalent else ""))
    for name in sorted(name for name, value in results.items() if value == "no tests"):
        print(f"  no tests: {name}")
    total = score(counts, sum(1 for name in survivors if name in equivalent))
    if total < args.min_score:
        sys.exit(f"mutation score {total:.1f} % is below {args.min_score:.0f} %: add a test for each survivor, "
                 f"or list it with its reason in {args.equivalent.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
