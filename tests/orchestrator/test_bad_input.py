"""Bad input across the commands: exit 2, one line naming the problem, the store left as it was."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Orch

TRAIN = ["submit", "train", "--data", "{train}", "--val", "{val}", "--image-size", "32"]
ABLATION = ["submit", "ablation", "--data", "{train}", "--val", "{val}", "--image-size", "32"]

# (name, argv, extra env, a fragment the one-line message must contain)
CASES = [
    ("unknown model", TRAIN + ["--model", "resnet19"], {}, "--model"),
    ("groups on resnet18", TRAIN + ["--model", "resnet18", "--groups", "8"], {}, "--groups"),
    ("negative epochs", TRAIN + ["--epochs", "-1"], {}, "--epochs"),
    ("zero batch size", TRAIN + ["--batch-size", "0"], {}, "--batch-size"),
    ("zero learning rate", TRAIN + ["--lr", "0"], {}, "--lr"),
    ("not a number", TRAIN + ["--lr", "fast"], {}, "--lr"),
    ("unknown norm", TRAIN + ["--model", "resnet50", "--norm", "xn"], {}, "--norm"),
    ("image too small", TRAIN + ["--image-size", "16"], {}, "--image-size"),
    ("bad width", TRAIN + ["--model", "resnet50", "--width-per-group", "0"], {}, "--width-per-group"),
    ("val fraction", TRAIN + ["--val-fraction", "1.5"], {}, "--val-fraction"),
    ("unknown precision", TRAIN + ["--precision", "fp16"], {}, "--precision"),
    ("unknown optimizer", TRAIN + ["--optimizer", "rmsprop"], {}, "--optimizer"),
    ("momentum out of range", TRAIN + ["--optimizer", "sgd", "--momentum", "1.5"], {}, "--momentum"),
    ("empty grid item", ABLATION + ["--seeds", "0,,1"], {}, "--seeds"),
    ("a learning rate of nan (it said 'must be at most 10.0, got nan')", TRAIN + ["--lr", "nan"], {},
     "--lr: must be a finite number (at most 10.0), got nan"),
    ("an empty queue name (a job queued where no worker reads)", TRAIN + ["--queue", ""], {},
     "--queue: queue name '': use letters, digits"),
    ("a queue name the broker refuses (a traceback after the job was recorded)", TRAIN + ["--queue", "a b"], {},
     "--queue: queue name 'a b'"),
    ("a worker reading an empty queue (it sat idle)", ["worker", "--queues", "orch,"], {}, "--queues: queue name ''"),
    ("flower on a port that cannot be (it ran)", ["flower", "--port", "99999"], {}, "--port"),
    ("an option given twice (click kept the last: job 2 was scored, silently)",
     ["submit", "score", "--job", "1", "--job=2", "--data", "{train}", "--out", "{tmp}/p.csv"], {},
     "--job: given 2 times (1, 2); give it once (see orch submit score --help)"),
    ("password on flower's command line", ["flower", "--basic-auth", "admin:secret"], {}, "--basic-auth"),
    ("flower's password without its user (every request got 401, nothing said)", ["flower", "--port", "5597"],
     {"FLOWER_BASIC_AUTH": "adminsecret"}, "FLOWER_BASIC_AUTH: expected user:password"),
    ("flower on a broker that does not answer (it retried for ever)", ["flower", "--port", "5597"],
     {"ORCH_BROKER_URL": "redis://127.0.0.1:1/0"}, "ORCH_BROKER_URL (redis://127.0.0.1:1/0): broker unreachable"),
    ("missing folder", ["submit", "train", "--data", "/no/such/folder"], {}, "--data"),
    ("one-class folder", ["submit", "train", "--data", "{one_class}"], {}, "one_class"),
    ("missing pretrained file", TRAIN + ["--pretrained", "/no/such.pt"], {}, "--pretrained"),
    ("a CSV as pretrained weights (queued; the worker quoted torch's weights_only=False advice)",
     TRAIN + ["--pretrained", "{tmp}/labels.csv"], {}, "--pretrained: {tmp}/labels.csv is not a PyTorch file"),
    ("an empty training folder (the error named no option)", ["submit", "train", "--data", "{empty}"], {},
     "--data: {empty}: no JPEG or PNG images found"),
    ("a validation class training lacks (the worker found it)", ["submit", "train", "--data", "{train}", "--val",
                                                                 "{cow_val}"], {}, "--val: class 'cow' is not one of"),
    ("bad grid list", ABLATION + ["--model", "resnet50", "--groups", "1,x"], {}, "--groups"),
    ("unbuildable grid cell", ABLATION + ["--model", "resnet18,resnet50", "--groups", "1,8"], {}, "--groups"),
    ("InstanceNorm on 1x1 maps", ABLATION + ["--model", "resnet50", "--norm", "bn,in", "--stem", "imagenet"], {},
     "--norm: in (InstanceNorm) would see one value per channel"),
    ("BatchNorm on a batch of one at 1x1", TRAIN + ["--stem", "imagenet", "--batch-size", "1"], {},
     "--batch-size: 1 with bn (BatchNorm) would see one value per channel"),
    ("width torchvision lacks", TRAIN + ["--model", "shufflenet_v2", "--width-mult", "0.75"], {},
     "--width-mult: shufflenet_v2 is defined for width_mult 0.5, 1.0, 1.5, 2.0"),
    ("groups on a MobileNet", ABLATION + ["--model", "mobilenet_v2", "--groups", "1,2"], {}, "--groups"),
    ("attention on a MobileNet", ABLATION + ["--model", "mobilenet_v3_large", "--attention", "none,se"], {},
     "--attention: attention se or cbam applies to the ResNet family"),
    ("non-existent job", ["status", "9999"], {}, "9999"),
    ("cancel unknown job", ["cancel", "9999"], {}, "9999"),
    ("retry unknown study", ["retry", "--study", "77"], {}, "--study"),
    ("report unknown study", ["report", "--study", "77"], {}, "--study"),
    ("report unknown metric", ["report", "--metric", "f1"], {}, "--metric"),
    ("an empty --baseline (taken as none)", ["report", "--study", "1", "--baseline", " "], {}, "--baseline: empty"),
    ("--json beside another --format", ["report", "--json", "--format", "csv"], {}, "--json: the same as --format json"),
    ("--limit beside a study's configs (it was ignored)", ["report", "--study", "1", "--limit", "5"], {}, "--limit"),
    ("--html beside --per-job (it wrote no file, exit 0)", ["report", "--study", "1", "--per-job", "--html",
                                                            "{tmp}/p.html"], {}, "--html: compares configs"),
    ("models unknown arch", ["models", "--arch", "vgg16"], {}, "--arch"),
    ("broker that does not answer (the CLI named neither the setting nor what was done)", TRAIN,
     {"ORCH_BROKER_URL": "redis://127.0.0.1:1/0"}, "ORCH_BROKER_URL (redis://127.0.0.1:1/0): broker unreachable"),
    ("retry on a broker that does not answer", ["retry", "1"], {"ORCH_BROKER_URL": "redis://127.0.0.1:1/0"},
     "; nothing was requeued"),
    ("a Redis database number the server lacks", TRAIN, {"ORCH_BROKER_URL": "redis://127.0.0.1:6379/999"},
     "broker refused the connection: DB index is out of range"),
    ("unsupported broker", TRAIN, {"ORCH_BROKER_URL": "amqp://guest:secret@127.0.0.1//"}, "ORCH_BROKER_URL"),
    ("unsupported database", ["status"], {"ORCH_DATABASE_URL": "mysql://root:secret@127.0.0.1/x"}, "ORCH_DATABASE_URL"),
    ("database that does not answer", ["status"], {"ORCH_DATABASE_URL": "postgresql+psycopg://u:secret@127.0.0.1:1/x"},
     "ORCH_DATABASE_URL (postgresql+psycopg://u:***@127.0.0.1:1/x): database unreachable"),
    ("a SQLite file in a folder that is a file (a traceback)", ["status"],
     {"ORCH_DATABASE_URL": "sqlite:///{tmp}/labels.csv/x.db"},
     "ORCH_DATABASE_URL: cannot use {tmp}/labels.csv/x.db (Not a directory beside it)"),
    ("a file that is no database (a traceback)", ["status"], {"ORCH_DATABASE_URL": "sqlite:///{tmp}/labels.csv"},
     "ORCH_DATABASE_URL: not a usable database (file is not a database)"),
    ("bad gpu list", ["worker", "--gpus", "a,b"], {}, "--gpus"),
    ("a GPU index where there is no GPU", ["worker", "--gpus", "0"], {"PATH": "/nonexistent"}, "--gpus: 0: no NVIDIA GPU"),
    ("no --data and no orch.toml", ["submit", "train", "--epochs", "1"], {}, "--data: required"),
    ("score without --data", ["submit", "score", "--job", "1", "--out", "{tmp}/p.csv"], {}, "--data: required"),
    ("a page into a missing folder", ["report", "--job", "1", "--html", "/no/such/dir/r.html"], {}, "--html: no such folder"),
    ("a chart into a missing folder", ["report", "--job", "1", "--plot", "/no/such/dir/c.png"], {}, "--plot: no such folder"),
    ("a home that cannot be made", ["--home", "/proc/no/such", "status"], {}, "--home / ORCH_HOME: cannot create"),
    ("synth one class", ["data", "synth", "{tmp}/x", "--classes", "cat"], {}, "--classes"),
    ("a blank in a comma list other than the grid's (read as 1,2; --seeds 0,,1 was refused)",
     ["report", "--job", "1,,2"], {}, "--job: empty item in '1,,2'; give a comma list such as 1,2,3"),
    ("a blank class name (dropped)", ["data", "synth", "{tmp}/x", "--classes", "cat,,dog"], {},
     "--classes: empty item in 'cat,,dog'"),
    ("a blank GPU index (dropped)", ["worker", "--gpus", "0,,1"], {}, "--gpus: empty item in '0,,1'"),
    ("synth into '' (an unset variable: it wrote 2,800 images into the current folder)", ["data", "synth", ""], {},
     "OUT: empty path; give a folder such as data"),
    ("an empty --data (it read the current folder)", ["submit", "train", "--data", ""], {}, "--data: empty path"),
    ("one job and --study (the study was ignored: any job shown as if in it)", ["status", "1", "--study", "1"], {},
     "--study: give a job ID or --study S, not both"),
    ("a trailing blank in --baseline (read as groups=8)", ["report", "--job", "1", "--baseline", "groups=8,"], {},
     "--baseline: empty item in 'groups=8,'"),
    ("an empty --gpus (taken as no --gpus: a worker on the CPU)", ["worker", "--gpus", ""], {},
     "--gpus: empty; give a comma list such as 0,1, or all"),
    ("an empty --name (the default name taken)", ["worker", "--name", ""], {}, "--name: empty"),
    # click's wording where a command raised the error ("Invalid value for --all: --all removes ...")
    ("data cache --all without --prune", ["data", "cache", "--all"], {}, "Error: --all: removes caches only with --prune"),
    ("synth of no images", ["data", "synth", "{tmp}/x", "--train", "0", "--val", "0", "--test", "0"], {},
     "Error: --train / --val / --test: all 0: nothing to write"),
    ("flower's auth file without user:password", ["flower", "--basic-auth-file", "{tmp}/labels.csv"], {},
     "Error: --basic-auth-file: {tmp}/labels.csv: expected user:password"),
    ("init of a folder that does not exist (FOLDER not named)", ["init", "{tmp}/nope"], {},
     "Error: FOLDER: no such folder: {tmp}/nope"),
    ("init of '' (it read the current folder)", ["init", ""], {}, "Error: FOLDER: empty path"),
    ("an empty --html (it said '. is a folder')", ["report", "--job", "1", "--html", ""], {}, "--html: empty path"),
    ("an empty --plot (it said the file must end in .png)", ["report", "--job", "1", "--plot", ""], {},
     "--plot: empty path"),
    # the tests run `python -m orchestrator`: the hint read "see orch -m orchestrator worker --help"
    ("a hint to run, under python -m", ["worker", "--threads", "0"], {}, "--threads: 0 is not in the range x>=1. "
     "(see orch worker --help)"),
    ("no such command: its hint (it read 'see orch  --help' by orch)", ["nope"], {}, "(see orch --help)"),
]


def once(argv: list[str]) -> list[str]:
    """A case's argv with each base option (TRAIN's, ABLATION's) left out where the case gives it
    again: an option given twice is itself refused, and would hide the error the case is about."""
    given = [i for i, a in enumerate(argv) if a.startswith("--")]
    last = {argv[i]: i for i in given}
    dropped = {j for i in given if last[argv[i]] != i for j in (i, i + 1)}
    return [a for i, a in enumerate(argv) if i not in dropped]


def snapshot(orch: Orch) -> tuple[str, str, list[str]]:
    broker = sorted(p.name for p in (orch.home / "broker" / "queue").iterdir())
    return (orch.run("status", "--json", check=True).stdout, orch.run("report", "--format", "json", check=True).stdout,
            broker)


@pytest.fixture
def seeded(orch: Orch, synth_data: Path, tmp_path: Path) -> tuple[Orch, dict[str, str]]:
    """A store holding one queued job (no worker), so there is something that must not be lost."""
    one_class, cow_val = tmp_path / "one_class", tmp_path / "cow_val"
    for folder in (one_class / "cat", cow_val / "cat", cow_val / "cow"):
        folder.mkdir(parents=True)
        for image in sorted((synth_data / "val").rglob("*.*"))[:3]:
            (folder / image.name).write_bytes(image.read_bytes())
    (tmp_path / "labels.csv").write_text("id,label\n0,1\n")
    (tmp_path / "empty").mkdir()
    fields = {"train": str(synth_data / "train"), "val": str(synth_data / "val"), "one_class": str(one_class),
              "cow_val": str(cow_val), "tmp": str(tmp_path), "empty": str(tmp_path / "empty")}
    orch.json("submit", "train", "--data", fields["train"], "--val", fields["val"], "--image-size", "32", "--epochs", "1")
    return orch, fields


def test_bad_inputs_exit_2_with_one_line_and_change_nothing(seeded: tuple[Orch, dict[str, str]]) -> None:
    orch, fields = seeded
    before = snapshot(orch)
    failures = []
    for name, argv, env, fragment in CASES:
        args, fragment = [a.format(**fields) for a in once(argv)], fragment.format(**fields)
        saved = orch.env
        orch.env = {**saved, **{key: value.format(**fields) for key, value in env.items()}}
        try:
            proc = orch.run(*args, timeout=60)
        finally:
            orch.env = saved
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        # a database or broker that did not answer exits 3 (a script may try again), bad input 2
        unavailable = any(words in proc.stderr for words in ("unreachable", "refused the connection"))
        ok = (proc.returncode == (3 if unavailable else 2) and len(lines) == 1 and lines[0].startswith("Error: ")
              and fragment in lines[0] and "Traceback" not in proc.stderr + proc.stdout and "secret" not in proc.stderr)
        if not ok:
            failures.append(f"{name}: rc={proc.returncode} stderr={proc.stderr!r}")
    assert not failures, "\n".join(failures)
    assert snapshot(orch) == before


def test_db_commands_on_a_file_that_is_no_database(orch: Orch, tmp_path: Path) -> None:
    """`orch db current` and `upgrade` open the database their own way: they ended in a traceback."""
    (tmp_path / "notes.txt").write_text("not a database\n" * 100)
    orch.env = {**orch.env, "ORCH_DATABASE_URL": f"sqlite:///{tmp_path}/notes.txt"}
    for command in (["db", "current"], ["db", "upgrade"]):
        proc = orch.run(*command, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.splitlines()[-1] == "Error: ORCH_DATABASE_URL: not a usable database (file is not a database)"


def test_db_current_on_a_home_not_made_yet(tmp_path: Path) -> None:
    """It said "database unreachable: unable to open database file", exit 3, on a fresh laptop."""
    from tests.conftest import base_env

    home = tmp_path / "new-home"
    proc = Orch(base_env(home), home).run("db", "current", timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("current: none  head: 0"), proc.stderr
    assert "no file yet" in proc.stderr and not home.exists()  # a read made nothing


def test_a_broker_that_accepts_and_never_answers_is_given_up_on(orch: Orch, synth_data: Path) -> None:
    """A hung Redis, or another service on its port: `orch submit` waited for ever (80 s and more)."""
    import socket
    import time

    with socket.socket() as silent:  # the kernel completes the connections; nothing ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        orch.env = {**orch.env, "ORCH_BROKER_URL": f"redis://127.0.0.1:{silent.getsockname()[1]}/0"}
        started = time.monotonic()
        proc = orch.run("submit", "train", "--data", str(synth_data / "train"), "--image-size", "32", timeout=120)
        took = time.monotonic() - started
    assert proc.returncode == 3 and "broker unreachable: Timeout reading from socket" in proc.stderr, proc.stderr
    assert "nothing was recorded or queued" in proc.stderr and took < 60  # 5-s reads, one retry: 12 s here


@pytest.mark.parametrize("command", [["status"], ["worker", "--threads", "1"]])
@pytest.mark.parametrize("user,database,words", [
    ("postgres", "orch_no_such_database", 'database "orch_no_such_database" does not exist'),
    ("orch_no_such_role", "test", 'role "orch_no_such_role" does not exist')])
def test_a_database_or_role_the_server_lacks_is_a_setting_not_an_outage(
        orch: Orch, command: list[str], user: str, database: str, words: str) -> None:
    """PostgreSQL answered "database ... does not exist" and orch said "database unreachable", exit 3,
    which the README tells a script to retry: no retry creates the database."""
    from tests.conftest import PG_ADMIN, need_service

    need_service("PostgreSQL", "127.0.0.1", 5432)
    url = f"postgresql+psycopg://{user}@{PG_ADMIN.rsplit('@', 1)[1].rsplit('/', 1)[0]}/{database}"
    orch.env = {**orch.env, "ORCH_DATABASE_URL": url}
    proc = orch.run(*command, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0] == (f"Error: ORCH_DATABASE_URL ({url}): {words}: the server answered and refused the setting, "
                        "so no retry helps"), proc.stderr
