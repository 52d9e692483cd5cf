"""The two listeners: the public app (uvicorn, HTTP/1.1) and the network's Nchf listener (granian, HTTP/2).

`tongka serve` is the public server itself (as it always was: a `kill -9` of it stops what it
served at once) and runs the Nchf listener as a child, `tongka nchf serve --with-parent`,
which stops by itself when the pipe from its parent closes, however the parent ended. Ctrl-C or
SIGTERM stops both; if either ends on its own, the other is stopped and the command exits 1.

The Nchf listener is granian (chosen by measurement: bench/README.md): HTTP/2 from Rust, the
app in Python. Plaintext, it serves h2c with prior knowledge, and in dev HTTP/1.1 as well
(curl, a browser); production speaks HTTP/2 only (TS 29.500). With a certificate and key it
is TLS (ALPN h2, TLS 1.2 or 1.3, as TS 33.210's profile allows); with a client CA, a client
without a certificate that CA issued is refused in the handshake (mutual TLS, TS 33.501).
Each granian worker has its own charging process (`nchf_app`'s lifespan).

With `TONGKA_BACKGROUND` embedded (the default on SQLite), `tongka serve` also runs the background
work (`background.py`: scheduled jobs, charging notifications) in threads of this process: one
runner per serve command, in the uvicorn supervisor when there are several workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tongka.config import Settings

NCHF_TARGET = "tongka.charging.nchf_app:create_nchf_app"
STOP_SECONDS = 30  # for a listener to finish what it holds once asked to stop, then it is killed
ASK_AGAIN_SECONDS = (
    3  # granian loses a SIGTERM that reaches a worker still starting: its workers are asked again
)


def nchf_server(settings: Settings, *, workers: int = 1) -> Any:
    """The granian server for the Nchf listener on `settings.nchf_bind` (not started)."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, SSLProtocols

    return Granian(
        NCHF_TARGET,
        factory=True,
        interface=Interfaces.ASGI,
        address=settings.nchf_host,
        port=settings.nchf_port,
        workers=workers,
        http=HTTPModes.auto if settings.dev else HTTPModes.http2,
        websockets=False,
        ssl_cert=settings.nchf_tls_cert,
        ssl_key=settings.nchf_tls_key,
        ssl_protocol_min=SSLProtocols.tls12,
        ssl_ca=settings.nchf_client_ca,
        ssl_client_verify=settings.nchf_client_ca is not None,
    )


def serve_nchf(settings: Settings, *, workers: int = 1, with_parent: bool = False) -> None:
    """Run the Nchf listener until SIGINT or SIGTERM (or, `with_parent`, until standard input closes)."""
    if with_parent:
        threading.Thread(target=_stop_when_parent_ends, name="parent-watch", daemon=True).start()
    nchf_server(settings, workers=workers).serve()  # exits non-zero itself if a worker fails


def _stop_when_parent_ends() -> None:
    """Standard input is a pipe from `tongka serve`: at its end (the parent is gone), stop as if asked."""
    try:
        while os.read(sys.stdin.fileno(), 4096):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def serve_both(
    settings: Settings, *, host: str, port: int, workers: int = 1, nchf_workers: int = 1
) -> int:
    """The public app on host:port here, the Nchf listener in a child; the exit code (0: asked to stop)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    asked = threading.Event()  # Ctrl-C or SIGTERM, as opposed to a listener ending by itself
    nchf_failed = threading.Event()

    def note(_signum: int, _frame: Any) -> None:
        # uvicorn handles the signal while it serves, then raises it again when done: here it only
        # notes it, so that the Nchf listener is stopped before this process ends.
        asked.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, note)

    nchf = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tongka",
            "nchf",
            "serve",
            "--workers",
            str(nchf_workers),
            "--with-parent",
        ],
        stdin=subprocess.PIPE,
        start_new_session=True,  # Ctrl-C reaches it from here, once, not from the terminal as well
    )
    config = uvicorn.Config(
        "tongka.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )
    server = uvicorn.Server(config)
    if workers > 1:
        # uvicorn 0.55: each worker process makes its own Server from `config`.
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
        run, stop_public = supervisor.run, supervisor.should_exit.set
    else:
        supervisor = None

        def stop_public() -> None:
            server.should_exit = True

        run = server.run

    def watch() -> None:
        nchf.wait()
        if not asked.is_set():
            nchf_failed.set()
            print(
                f"tongka: the Nchf listener exited with {nchf.returncode}; stopping the public app",
                file=sys.stderr,
            )
            _end_group(
                nchf.pid
            )  # a granian main that died leaves its workers serving on: they go too
            stop_public()

    threading.Thread(target=watch, name="nchf-watch", daemon=True).start()
    # The background work, once per `tongka serve` (here, not in each uvicorn worker) when embedded.
    background = None
    if settings.background_embedded:
        from tongka.background import Background, with_dev_servers

        background = Background(with_dev_servers(settings))
        background.start()
    try:
        run()
    finally:
        asked.set()
        if background is not None:
            background.stop()
        _stop(nchf)
    if nchf_failed.is_set():
        return 1
    if (
        supervisor is None and not server.started
    ):  # the public app never served (its port taken, ...)
        return 1
    return 0 if nchf.returncode == 0 else 1


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ask the Nchf listener to stop (granian stops its workers, each its charging process, after what
    they hold is answered); kill it if it has not within STOP_SECONDS."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        for _attempt in range(STOP_SECONDS // ASK_AGAIN_SECONDS):
            try:
                process.wait(timeout=ASK_AGAIN_SECONDS)
                break
            except (
                subprocess.TimeoutExpired
            ):  # a worker that was starting when asked: asked again (a no-op for the rest)
                for worker in _children(process.pid):
                    _signal(worker, signal.SIGTERM)
        else:
            process.kill()
            process.wait()
    _end_group(process.pid)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux's /proc; elsewhere none are found)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(entry.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.append(int(entry.parent.name))
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _end_group(leader: int) -> None:
    """Whatever is left of the listener's process group (its own session): nothing, once it stopped well."""
    try:
        os.killpg(leader, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
