"""Conformance over workbooks other programs wrote (../shared/corpus/workbooks, issue 11).

python-calamine is the judge of what is readable: every workbook it reads (its first sheet, in a
process of its own with a memory cap) must be read by the importer, judged on its columns only
(none is a member sheet, so the missing-columns verdict is a read); every other file gets its own
one-line answer. Nothing may abort, hang or show a traceback, so everything runs in child
processes: long-lived workers that are replaced when one dies, and a few files through the real CLI.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from importer.store.engine import open_database
from importer.store.orgs import create_organization

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "workbooks"
SUPPORTED = {".xlsx", ".xlsm", ".xls", ".ods"}
# Per file: far more than any of them takes (a hang, not a slow file, is what this catches).
FILE_SECONDS = 30
WORKERS = 2
# A verdict on the content (its columns), not a refusal of the file: the file was read.
CONTENT_VERDICTS = {"opened", "MissingColumnsError", "FileLevelError"}

# Reads one path per line from stdin, answers one JSON line each. The judge: python-calamine alone,
# under a memory cap (an allocation failure aborts the process, and the worker is replaced).
CALAMINE_WORKER = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
import python_calamine
for line in sys.stdin:
    try:
        python_calamine.CalamineWorkbook.from_path(line.strip()).get_sheet_by_index(0).to_python()
        verdict = "read"
    except BaseException as exc:
        verdict = type(exc).__name__
    print(json.dumps({"verdict": verdict}), flush=True)
"""

# The importer's own reading function, as `importer import` calls it.
IMPORTER_WORKER = """
import json, sys
from pathlib import Path
from importer.errors import FileLevelError
from importer.reading.sheet import open_sheet
from importer.settings import Settings
from importer.sheets import load_sheet
from importer.values import UserType
spec = load_sheet(UserType.PORTAL)
for line in sys.stdin:
    try:
        open_sheet(Path(line.strip()), spec, settings=Settings())
        verdict, message = "opened", ""
    except FileLevelError as exc:
        verdict, message = type(exc).__name__, str(exc)
    print(json.dumps({"verdict": verdict, "message": message}), flush=True)
"""


@dataclass(frozen=True)
class Outcome:
    verdict: str  # what the worker answered, or "died (exit N)" / "hung"
    message: str = ""


def corpus_files() -> list[Path]:
    assert CORPUS.is_dir(), f"the workbook corpus is missing: {CORPUS}"
    files = sorted(path for path in CORPUS.glob("*/*") if not path.name.startswith("LICENSE"))
    assert len(files) > 100
    return files


def run_workers(code: str, paths: Iterable[Path]) -> dict[Path, Outcome]:
    """Each path through a worker process; a worker that dies or hangs is replaced for the rest."""
    todo: queue.Queue[Path] = queue.Queue()
    for path in paths:
        todo.put(path)
    results: dict[Path, Outcome] = {}

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def serve() -> None:
        worker = start()
        while True:
            try:
                path = todo.get_nowait()
            except queue.Empty:
                break
            assert worker.stdin is not None and worker.stdout is not None
            timer = threading.Timer(FILE_SECONDS, worker.kill)
            timer.start()
            try:
                worker.stdin.write(f"{path}\n")
                worker.stdin.flush()
                line = worker.stdout.readline()
            except BrokenPipeError:
                line = ""
            finally:
                timer.cancel()
            if line:
                answer = json.loads(line)
                results[path] = Outcome(answer["verdict"], answer.get("message", ""))
                continue
            code_ = worker.wait()
            results[path] = Outcome("hung" if code_ == -9 else f"died (exit {code_})")
            worker = start()
        if worker.stdin is not None:
            worker.stdin.close()
        worker.wait()

    threads = [threading.Thread(target=serve) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture(scope="module")
def verdicts() -> dict[Path, tuple[Outcome, Outcome]]:
    """(python-calamine's outcome, the importer's) for every file of the corpus."""
    files = corpus_files()
    judge = run_workers(CALAMINE_WORKER, files)
    importer = run_workers(IMPORTER_WORKER, files)
    return {path: (judge[path], importer[path]) for path in files}


def test_every_workbook_python_calamine_reads_is_read(verdicts: dict[Path, tuple[Outcome, Outcome]]) -> None:
    refused = {
        f"{path.parent.name}/{path.name}": importer.message or importer.verdict
        for path, (judge, importer) in verdicts.items()
        if judge.verdict == "read"
        and path.suffix.lower() in SUPPORTED
        and importer.verdict not in CONTENT_VERDICTS
    }
    assert refused == {}
    read = [path for path, (judge, _) in verdicts.items() if judge.verdict == "read"]
    assert len(read) > 100  # the judge itself works


def test_every_other_file_gets_its_own_one_line_answer(verdicts: dict[Path, tuple[Outcome, Outcome]]) -> None:
    wrong = {}
    for path, (judge, importer) in verdicts.items():
        if judge.verdict == "read" and path.suffix.lower() in SUPPORTED:
            continue
        message = importer.message
        fine = (
            importer.verdict.endswith("Error")
            and path.name in message
            and "\n" not in message
            and "unexpected" not in message.lower()
        )
        if path.suffix.lower() not in SUPPORTED:
            fine = fine and "unsupported file type" in message
        elif judge.verdict == "PasswordError":
            fine = fine and "password-protected" in message
        if not fine:
            wrong[f"{path.parent.name}/{path.name}"] = (judge.verdict, importer.verdict, message)
    assert wrong == {}


def test_nothing_aborts_or_hangs(verdicts: dict[Path, tuple[Outcome, Outcome]]) -> None:
    crashed = {
        f"{path.parent.name}/{path.name}": importer.verdict
        for path, (_, importer) in verdicts.items()
        if importer.verdict.startswith("died") or importer.verdict == "hung"
    }
    assert crashed == {}


# --- through the real command line ---------------------------------------------------------------

OWNER = "olive.owner@acme.example"
# A few files of the kinds the importer used to refuse or crash on, and the words of each answer.
CLI_CASES = {
    "calamine/date.ods": "missing required columns",  # LibreOffice, with a thumbnail
    "calamine/pivots.xlsx": "missing required columns",  # a UTF-16 customXml part
    "calamine/OOM_alloc3.xls": "is not a valid .xls workbook",  # a fuzzed container
    "python-calamine/password.xls": "password-protected",
}


@pytest.fixture(scope="module")
def cli_answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """`importer import` run on each case at once (each start of the CLI takes seconds)."""
    folder = tmp_path_factory.mktemp("corpus-cli")
    url = f"sqlite:///{folder / 'importer.db'}"
    engine = open_database(url)
    create_organization(engine, "Acme Corp", owner_email=OWNER, owner_name="Olive Owner")
    engine.dispose()
    command = [sys.executable, "-m", "importer", "--db", url, "import", "--report-dir", str(folder / "r")]
    runs = {
        name: subprocess.Popen(
            [*command, str(CORPUS / name), "--org", "Acme Corp", "--as", OWNER, "--type", "portal"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in CLI_CASES
    }
    answers = {}
    for name, run in runs.items():
        out, err = run.communicate(timeout=120)
        answers[name] = subprocess.CompletedProcess(run.args, run.returncode, out, err)
    return answers


@pytest.mark.parametrize(("name", "says"), CLI_CASES.items())
def test_the_command_line_answers_in_one_line(
    cli_answers: dict[str, subprocess.CompletedProcess[str]], name: str, says: str
) -> None:
    done = cli_answers[name]
    lines = done.stderr.strip().splitlines()
    assert (done.returncode, len(lines)) == (1, 1), done.stderr
    assert Path(name).name in lines[0] and says in lines[0]
    assert "unexpected" not in lines[0].lower() and "Traceback" not in done.stderr
