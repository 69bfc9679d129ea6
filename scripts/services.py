"""Start and stop the real services the tests and benchmarks talk to, all on 127.0.0.1.

PostgreSQL (``initdb`` + ``pg_ctl``, run as the ``postgres`` user when we are root), MariaDB
(``mariadb-install-db`` + ``mariadbd``) and ``moto_server`` (S3) each get a free loopback port,
a throw-away data directory and a user with a password. Their URLs are written as shell
``export`` lines so that the test fixtures in ``tests/conftest.py`` find them::

    python scripts/services.py start     # background set in .services/; `source .services/env`
    python scripts/services.py status
    python scripts/services.py stop      # stop it and delete its data
    python scripts/services.py run -- make check   # a private set, always stopped afterwards

``start`` is idempotent: a running set recorded in ``.services/state.json`` that still answers
is reused. ``run`` never touches that shared set: it starts its own in ``.services/run-<pid>/``,
exports the variables into the command's environment, and stops everything when the command
ends, fails, or the harness gets SIGINT/SIGTERM/SIGHUP; it exits with the command's code.
Sets left behind by a harness that was killed outright are reaped by the next invocation.

Stdlib only: it runs before anything else is known to work.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = ROOT / ".services"
DB_USER = "asyncify"
DB_NAME = "asyncify_test"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
LOG_TAIL_LINES = 25

ENV_POSTGRES = "ASYNCIFY_TEST_POSTGRES_URL"
ENV_MYSQL = "ASYNCIFY_TEST_MYSQL_URL"
# the CA certificate (PEM) each server's TLS certificate comes from: see `make_tls`
ENV_POSTGRES_CA = "ASYNCIFY_TEST_POSTGRES_CA"
ENV_MYSQL_CA = "ASYNCIFY_TEST_MYSQL_CA"
ENV_S3 = "ASYNCIFY_TEST_S3_ENDPOINT"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class ServiceError(RuntimeError):
    """A service could not be started or stopped; the message names it and shows its log."""


class Interrupted(Exception):
    """The harness got a termination signal while starting the services."""


def log(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pid_alive(pid: int) -> bool:
    """True if *pid* runs and is not a zombie (reaping it when it is our own child)."""
    if pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def wait_pid_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def terminate(pid: int, name: str, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM *pid*, wait up to *timeout*, then SIGKILL its process group and itself."""
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_pid_exit(pid, timeout):
        return
    log(f"{name} (pid {pid}) ignored SIGTERM for {timeout:.0f} s; killing it")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_pid_exit(pid, 5.0)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    last = text.splitlines()[-lines:]
    return "\n".join(f"    | {line}" for line in last) or "    | (log is empty)"


def is_root() -> bool:
    return os.geteuid() == 0


def as_user(user: str, argv: Sequence[str]) -> list[str]:
    """*argv* run as *user* when we are root (database servers refuse to run as root)."""
    if not is_root():
        return list(argv)
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user, "--", *argv]
    return ["su", user, "-s", "/bin/sh", "-c", shlex.join(argv)]


def chown_to(path: Path, user: str) -> None:
    if not is_root():
        return
    entry = pwd.getpwnam(user)
    for dirpath, _dirnames, filenames in os.walk(path):
        os.chown(dirpath, entry.pw_uid, entry.pw_gid)
        for filename in filenames:
            os.chown(os.path.join(dirpath, filename), entry.pw_uid, entry.pw_gid)


def check_access(user: str, path: Path, service: str) -> None:
    """ServiceError unless *user* can write *path* (every parent must be traversable)."""
    if not is_root():
        return
    code, _ = capture(as_user(user, ["test", "-w", str(path)]))
    if code != 0:
        raise ServiceError(
            f"{service}: the {user!r} user cannot write {path}; make its parent directories "
            f"traversable (chmod o+x) or move the checkout"
        )


def run_logged(
    argv: Sequence[str],
    logfile: Path,
    what: str,
    timeout: float = 120.0,
    new_session: bool = False,
) -> None:
    """Run a set-up command, its output appended to *logfile*; ServiceError if it fails.

    The output goes to a file rather than a pipe: daemons forked by the command (pg_ctl's
    postmaster) would otherwise keep the pipe open and the call would never return.
    """
    with logfile.open("ab") as out:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        try:
            code = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                start_new_session=new_session,
            ).returncode
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"{what} timed out after {timeout:.0f} s\n{tail(logfile)}") from exc
        except OSError as exc:
            raise ServiceError(f"{what} could not run: {exc}") from exc
    if code != 0:
        raise ServiceError(f"{what} failed with exit code {code}\n{tail(logfile)}")


def capture(argv: Sequence[str], timeout: float = 10.0) -> tuple[int, str]:
    """Run a short query command; (exit code, stdout+stderr)."""
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError) as exc:
        return 1, str(exc)
    return done.returncode, (done.stdout + done.stderr).strip()


def wait_until(check: Callable[[], bool], what: str, logfile: Path, pid: int | None = None) -> None:
    """Poll *check* until it passes; ServiceError with the log tail on timeout or early exit."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not pid_alive(pid):
            raise ServiceError(f"{what} exited during start-up\n{tail(logfile)}")
        time.sleep(0.1)
    raise ServiceError(
        f"{what} did not accept connections within {START_TIMEOUT:.0f} s\n{tail(logfile)}"
    )


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- services


@dataclass
class ServiceRecord:
    """What ``state.json`` keeps about one running service."""

    name: str
    pid: int
    port: int
    version: str
    env: dict[str, str]
    display: str
    extra: dict[str, str] = field(default_factory=dict)


def find_pg_bindir() -> Path:
    override = os.environ.get("ASYNCIFY_PG_BINDIR")
    candidates = [Path(override)] if override else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    candidates.sort(key=lambda p: p.parent.name != "15")  # prefer 15, the version CI uses
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        candidates.append(Path(pg_ctl).parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise ServiceError(
        "postgres: initdb/pg_ctl not found (looked in /usr/lib/postgresql/*/bin and PATH; "
        "set ASYNCIFY_PG_BINDIR)"
    )


def make_tls(home: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA of its own and a certificate it signed for 127.0.0.1, for the server of *home*
    (owned by the server's user, as *home* is): (CA, certificate, key) PEM files. Both
    servers speak TLS to clients that ask for it, so the tests of `ssl` options meet a real
    handshake."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from scripts.tls_files import make_ca

    directory = home / "tls"
    directory.mkdir()
    return make_ca(directory, name, "127.0.0.1")


def start_postgres(base: Path) -> ServiceRecord:
    bindir = find_pg_bindir()
    home = base / "pg"
    data, sockdir, logfile = home / "data", home / "sock", home / "postgres.log"
    if home.exists():
        shutil.rmtree(home)
    sockdir.mkdir(parents=True)
    home.chmod(0o700)
    password = secrets.token_hex(12)
    pwfile = home / "pwfile"
    pwfile.write_text(password + "\n")
    logfile.touch()
    ca_file, cert_file, key_file = make_tls(home, "postgres")
    chown_to(home, "postgres")
    check_access("postgres", home, "postgres")
    run_logged(
        as_user(
            "postgres",
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                DB_USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        ),
        logfile,
        "postgres: initdb",
    )
    pwfile.unlink()
    psql = [str(bindir / "psql"), "-h", str(sockdir), "-U", DB_USER, "-X", "-q", "-At"]
    for attempt in range(3):
        port = free_port()
        options = (
            f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
            f"-c ssl=on -c ssl_cert_file={cert_file} -c ssl_key_file={key_file}"
        )
        try:
            run_logged(
                as_user(
                    "postgres",
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(data),
                        "-l",
                        str(logfile),
                        "-o",
                        options,
                        "-w",
                        "-t",
                        str(int(START_TIMEOUT)),
                        "start",
                    ],
                ),
                logfile,
                f"postgres: pg_ctl start on port {port}",
                timeout=START_TIMEOUT + 10,
                new_session=True,  # a Ctrl-C meant for the tests must not reach the server
            )
        except ServiceError:
            if attempt == 2 or not port_in_use_error(logfile):
                raise
            log(f"postgres: port {port} was taken meanwhile; retrying on another port")
            continue
        break
    pid = int((data / "postmaster.pid").read_text().split()[0])

    def answers() -> bool:
        code, _ = capture(
            as_user("postgres", [*psql, "-p", str(port), "-d", "postgres", "-c", "select 1"])
        )
        return code == 0 and port_open(port)

    wait_until(answers, "postgres", logfile, pid)
    code, out = capture(
        as_user(
            "postgres",
            [*psql, "-p", str(port), "-d", "postgres", "-c", f"CREATE DATABASE {DB_NAME}"],
        )
    )
    if code != 0:
        raise ServiceError(f"postgres: CREATE DATABASE failed: {out}\n{tail(logfile)}")
    code, version = capture(
        as_user("postgres", [*psql, "-p", str(port), "-d", DB_NAME, "-c", "SHOW server_version"])
    )
    version = version.split()[0] if code == 0 and version else "?"
    url = f"postgresql://{DB_USER}:{password}@127.0.0.1:{port}/{DB_NAME}"
    return ServiceRecord(
        name="postgres",
        pid=pid,
        port=port,
        version=f"PostgreSQL {version}",
        env={ENV_POSTGRES: url, ENV_POSTGRES_CA: str(ca_file)},
        display=f"postgresql://{DB_USER}:***@127.0.0.1:{port}/{DB_NAME}",
        extra={"bindir": str(bindir), "data": str(data)},
    )


def port_in_use_error(logfile: Path) -> bool:
    text = tail(logfile, 40).lower()
    return "address already in use" in text or "could not bind" in text


def stop_postgres(record: ServiceRecord) -> None:
    data = record.extra.get("data", "")
    bindir = record.extra.get("bindir", "")
    if data and bindir and Path(data, "postmaster.pid").exists() and pid_alive(record.pid):
        code, out = capture(
            as_user(
                "postgres",
                [
                    f"{bindir}/pg_ctl",
                    "-D",
                    data,
                    "stop",
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(STOP_TIMEOUT)),
                ],
            ),
            timeout=STOP_TIMEOUT + 5,
        )
        if code != 0:
            log(f"postgres: pg_ctl stop failed ({out.splitlines()[-1:]}); killing pid {record.pid}")
    terminate(record.pid, "postgres", timeout=5.0)


def find_binary(*names: str) -> str:
    for name in names:
        for path in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
            if path and Path(path).exists():
                return path
    raise ServiceError(
        f"mariadb: none of {', '.join(names)} found; install it with "
        "`apt-get install -y mariadb-server` (the Makefile's system-deps target does it)"
    )


def start_mariadb(base: Path) -> ServiceRecord:
    mariadbd = find_binary("mariadbd", "mysqld")
    install_db = find_binary("mariadb-install-db", "mysql_install_db")
    client = find_binary("mariadb", "mysql")
    home = base / "mariadb"
    data, logfile = home / "data", home / "mariadb.log"
    sock, pidfile, tmpdir = home / "mariadb.sock", home / "mariadb.pid", home / "tmp"
    if home.exists():
        shutil.rmtree(home)
    tmpdir.mkdir(parents=True)
    logfile.touch()
    ca_file, cert_file, key_file = make_tls(home, "mariadb")
    run_as = ["--user=mysql"] if is_root() else []
    if is_root():
        chown_to(home, "mysql")
        check_access("mysql", home, "mariadb")
    run_logged(
        [
            install_db,
            "--no-defaults",
            f"--datadir={data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            *run_as,
        ],
        logfile,
        "mariadb: mariadb-install-db",
    )
    root_client = [client, "--no-defaults", "-uroot", f"--socket={sock}", "-N", "-B"]
    proc: subprocess.Popen[bytes] | None = None
    port = 0
    for attempt in range(3):
        port = free_port()
        with logfile.open("ab") as out:
            proc = subprocess.Popen(
                [
                    mariadbd,
                    "--no-defaults",
                    f"--datadir={data}",
                    f"--port={port}",
                    "--bind-address=127.0.0.1",
                    f"--socket={sock}",
                    f"--pid-file={pidfile}",
                    f"--tmpdir={tmpdir}",
                    "--skip-name-resolve",
                    "--skip-log-bin",
                    "--innodb-buffer-pool-size=64M",
                    "--innodb-flush-log-at-trx-commit=0",
                    "--max-connections=200",
                    f"--ssl-ca={ca_file}",
                    f"--ssl-cert={cert_file}",
                    f"--ssl-key={key_file}",
                    *run_as,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        live = proc

        def answers(port: int = port) -> bool:
            if not sock.exists() or not port_open(port):
                return False
            return capture([*root_client, "-e", "select 1"])[0] == 0

        try:
            wait_until(answers, f"mariadb on port {port}", logfile, live.pid)
        except ServiceError:
            terminate(live.pid, "mariadb", timeout=5.0)
            if attempt == 2 or not port_in_use_error(logfile):
                raise
            log(f"mariadb: port {port} was taken meanwhile; retrying on another port")
            continue
        break
    if proc is None:  # pragma: no cover - the loop above either breaks with proc set or raises
        raise ServiceError("mariadb: not started")
    password = secrets.token_hex(12)
    setup = (
        f"CREATE USER '{DB_USER}'@'%' IDENTIFIED BY '{password}';"
        f"CREATE USER '{DB_USER}'@'localhost' IDENTIFIED BY '{password}';"
        f"GRANT ALL PRIVILEGES ON *.* TO '{DB_USER}'@'%' WITH GRANT OPTION;"
        f"GRANT ALL PRIVILEGES ON *.* TO '{DB_USER}'@'localhost' WITH GRANT OPTION;"
        f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4;"
        "FLUSH PRIVILEGES;"
    )
    code, output = capture([*root_client, "-e", setup])
    if code != 0:
        terminate(proc.pid, "mariadb", timeout=5.0)
        raise ServiceError(f"mariadb: creating the test user failed: {output}\n{tail(logfile)}")
    code, version = capture([*root_client, "-e", "select version()"])
    version = version.split("-")[0] if code == 0 and version else "?"
    url = f"mysql://{DB_USER}:{password}@127.0.0.1:{port}/{DB_NAME}"
    return ServiceRecord(
        name="mariadb",
        pid=proc.pid,
        port=port,
        version=f"MariaDB {version}",
        env={ENV_MYSQL: url, ENV_MYSQL_CA: str(ca_file)},
        display=f"mysql://{DB_USER}:***@127.0.0.1:{port}/{DB_NAME}",
    )


def find_moto_server() -> Path:
    beside = Path(sys.executable).parent / "moto_server"
    venv = ROOT / ".venv" / "bin" / "moto_server"
    found = shutil.which("moto_server")
    for candidate in (beside, venv, Path(found) if found else None):
        if candidate is not None and candidate.exists():
            return candidate
    raise ServiceError("moto: moto_server not found; run `make install`")


def moto_version(moto_server: Path) -> str:
    python = moto_server.parent / "python"
    code, out = capture(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('moto'))"]
    )
    return out.splitlines()[-1] if code == 0 and out else "?"


def start_moto(base: Path) -> ServiceRecord:
    moto_server = find_moto_server()
    home = base / "moto"
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    logfile = home / "moto.log"
    proc: subprocess.Popen[bytes] | None = None
    port = 0
    for attempt in range(3):
        port = free_port()
        with logfile.open("ab") as out:
            proc = subprocess.Popen(
                [str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **AWS_ENV},
            )
        live, url = proc, f"http://127.0.0.1:{port}"

        def answers(url: str = url) -> bool:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1.0) as resp:
                    return bool(resp.status == 200)
            except (OSError, urllib.error.URLError):
                return False

        try:
            wait_until(answers, f"moto_server on port {port}", logfile, live.pid)
        except ServiceError:
            terminate(live.pid, "moto", timeout=5.0)
            if attempt == 2 or not port_in_use_error(logfile):
                raise
            continue
        break
    if proc is None:  # pragma: no cover - the loop above either breaks with proc set or raises
        raise ServiceError("moto: not started")
    endpoint = f"http://127.0.0.1:{port}"
    return ServiceRecord(
        name="moto",
        pid=proc.pid,
        port=port,
        version=f"moto {moto_version(moto_server)}",
        env={ENV_S3: endpoint, **AWS_ENV},
        display=endpoint,
    )


STARTERS: dict[str, Callable[[Path], ServiceRecord]] = {
    "postgres": start_postgres,
    "mariadb": start_mariadb,
    "moto": start_moto,
}


def stop_record(record: ServiceRecord) -> None:
    if record.name == "postgres":
        stop_postgres(record)
    else:
        terminate(record.pid, record.name)


def record_answers(record: ServiceRecord) -> bool:
    return pid_alive(record.pid) and port_open(record.port)


# --------------------------------------------------------------------------- service sets


@dataclass
class ServiceSet:
    """The services of one directory: ``.services/`` (shared) or ``.services/run-<pid>/``."""

    base: Path
    records: list[ServiceRecord] = field(default_factory=list)
    owner_pid: int = 0

    @property
    def state_file(self) -> Path:
        return self.base / "state.json"

    @property
    def env_file(self) -> Path:
        return self.base / "env"

    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for record in self.records:
            merged.update(record.env)
        return merged

    def load(self) -> bool:
        try:
            raw: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return False
        self.owner_pid = int(raw.get("owner_pid", 0))
        self.records = [ServiceRecord(**item) for item in raw.get("services", [])]
        return True

    def save(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        payload = {
            "owner_pid": self.owner_pid,
            "services": [asdict(record) for record in self.records],
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.chmod(0o600)
        tmp.replace(self.state_file)
        lines = [f"export {key}={shlex.quote(value)}" for key, value in self.env().items()]
        tmp = self.env_file.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.chmod(0o600)
        tmp.replace(self.env_file)

    def healthy(self) -> bool:
        names = {record.name for record in self.records}
        return names == set(STARTERS) and all(record_answers(r) for r in self.records)

    def start(self, should_abort: Callable[[], str | None] = lambda: None) -> None:
        """Start every service; stop the started ones if one fails or *should_abort* says so.

        *should_abort* is polled between services: a signal handler records the signal
        instead of raising in the middle of a start-up, which would orphan a half-started
        server whose pid is not recorded yet.
        """
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)  # the postgres and mysql users must reach their subdirectories
        self.records = []
        try:
            for name, starter in STARTERS.items():
                reason = should_abort()
                if reason:
                    raise Interrupted(reason)
                began = time.monotonic()
                record = starter(self.base)
                self.records.append(record)
                self.save()
                log(
                    f"{name}: {record.version} on {record.display} "
                    f"(pid {record.pid}, {time.monotonic() - began:.1f} s)"
                )
            reason = should_abort()
            if reason:
                raise Interrupted(reason)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for record in reversed(self.records):
            try:
                stop_record(record)
                log(f"{record.name}: stopped")
            except Exception as exc:  # keep stopping the others; say what went wrong
                log(f"{record.name}: stopping failed: {exc}")
        self.records = []
        for name in (*STARTERS, "pg"):
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(self.base / name)
        for path in (self.state_file, self.env_file):
            path.unlink(missing_ok=True)

    def summary(self) -> str:
        return ", ".join(f"{r.version} ({r.display})" for r in self.records)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialize harness invocations that share *path* (several shells may run at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def reap_orphans() -> None:
    """Stop the private sets of ``run`` invocations whose harness no longer exists."""
    for state in SERVICES_DIR.glob("run-*/state.json"):
        orphan = ServiceSet(state.parent)
        if orphan.load() and orphan.owner_pid and not pid_alive(orphan.owner_pid):
            log(f"reaping services left by dead harness pid {orphan.owner_pid}")
            orphan.stop()
            shutil.rmtree(orphan.base, ignore_errors=True)
    for leftover in SERVICES_DIR.glob("run-*"):
        pid_text = leftover.name.removeprefix("run-")
        state_missing = not (leftover / "state.json").exists()
        if state_missing and pid_text.isdigit() and not pid_alive(int(pid_text)):
            shutil.rmtree(leftover, ignore_errors=True)


# --------------------------------------------------------------------------- commands


def cmd_start() -> int:
    shared = ServiceSet(SERVICES_DIR)
    with locked(SERVICES_DIR / "lock"):
        reap_orphans()
        if shared.load():
            if shared.healthy():
                log(f"reusing running services: {shared.summary()}")
                shared.save()
                print(f"source {shared.env_file}")
                return 0
            log("services recorded in state.json do not all answer; restarting them")
            shared.stop()
        shared.owner_pid = 0
        received: list[int] = []

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            received.append(signum)

        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {signum: signal.signal(signum, on_signal) for signum in handled}
        try:
            shared.start(lambda: signal.Signals(received[-1]).name if received else None)
        except ServiceError as exc:
            log(f"ERROR: {exc}")
            return 1
        except Interrupted as exc:
            log(f"interrupted by {exc}; the services started so far were stopped")
            return 128 + received[-1]
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    log(f"ready: {shared.summary()}")
    print(f"source {shared.env_file}")
    return 0


def cmd_stop() -> int:
    shared = ServiceSet(SERVICES_DIR)
    with locked(SERVICES_DIR / "lock"):
        if not shared.load():
            log("no services recorded in .services/state.json")
            reap_orphans()
            return 0
        shared.stop()
        reap_orphans()
    return 0


def cmd_status() -> int:
    shared = ServiceSet(SERVICES_DIR)
    if not shared.load() or not shared.records:
        print("services: not running")
        return 1
    ok = True
    for record in shared.records:
        up = record_answers(record)
        ok = ok and up
        state = "up" if up else "DOWN"
        print(f"{record.name:9} {state:5} {record.version:22} {record.display} (pid {record.pid})")
    return 0 if ok else 1


def cmd_run(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        log("run: no command given (usage: services.py run -- CMD ...)")
        return 2
    private = ServiceSet(SERVICES_DIR / f"run-{os.getpid()}", owner_pid=os.getpid())
    child: subprocess.Popen[bytes] | None = None
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if child is not None and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    def aborted() -> str | None:
        return signal.Signals(received[-1]).name if received else None

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, on_signal) for signum in handled}
    code = 1
    try:
        with locked(SERVICES_DIR / "lock"):
            reap_orphans()
        private.start(should_abort=aborted)
        log(f"services: {private.summary()}")
        if received:
            raise Interrupted(signal.Signals(received[-1]).name)
        child = subprocess.Popen(argv, env={**os.environ, **private.env()})
        code = child.wait()
    except ServiceError as exc:
        log(f"ERROR: {exc}")
        code = 1
    except Interrupted as exc:
        log(f"interrupted by {exc} while starting the services")
        code = 128 + received[-1] if received else 130
    except FileNotFoundError as exc:
        log(f"run: cannot execute {argv[0]!r}: {exc}")
        code = 127
    finally:
        for signum in handled:  # a second Ctrl-C must not leave servers behind
            signal.signal(signum, signal.SIG_IGN)
        private.stop()
        shutil.rmtree(private.base, ignore_errors=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if code < 0:  # the child died of a signal: report it the way a shell does
        code = 128 - code
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="services.py",
        description="Real PostgreSQL, MariaDB and moto (S3) on 127.0.0.1 for tests and benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start", help="start the shared set in .services/ (reused when running)")
    sub.add_parser("stop", help="stop the shared set and delete its data")
    sub.add_parser("status", help="show the shared set; exit 1 unless every service answers")
    run = sub.add_parser("run", help="start a private set, run CMD with its env, always stop")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    if args.command == "start":
        return cmd_start()
    if args.command == "stop":
        return cmd_stop()
    if args.command == "status":
        return cmd_status()
    return cmd_run(list(args.cmd))


if __name__ == "__main__":
    sys.exit(main())
