"""Backend ``async``: envs in worker processes, observations through shared memory.

Each worker owns a contiguous slice of the envs and steps it with the same loop as the sync
backend (:class:`SerialEnvs`), writing straight into shared arrays; the pipes carry only tiny
commands. One worker per CPU core (not per env, as gymnasium's AsyncVectorEnv does) avoids
paying a process switch per env and step on small machines. Workers are started with
``forkserver`` (fork is unsafe once torch threads exist; SB3's SubprocVecEnv makes the same
choice) from a server that has already imported reprl.envs, so starting one is cheap.

A worker that raises, or dies (even by SIGKILL), makes the next call raise an EnvError naming
the env id and the worker: the parent waits on the pipe and on the process, never blindly.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import signal
import sys
import traceback
import weakref
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import numpy as np

from reprl.envs.core import CoreVectorEnv, RawStep
from reprl.envs.serial import SerialEnvs
from reprl.envs.sync import copy_raw, raw_buffers
from reprl.errors import EnvError
from reprl.registry import VECTOR_BACKENDS

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from reprl.envs.config import EnvConfig
    from reprl.envs.family import EnvFamily
    from reprl.types import EnvSpec

Layout = dict[str, tuple[tuple[int, ...], str]]
"""Shared array name -> (shape, dtype string)."""


def _context() -> Any:
    """forkserver (preloading reprl.envs) where available, else spawn."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["reprl.envs"])
        return ctx
    return mp.get_context("spawn")


def _check_main_importable() -> None:
    """forkserver and spawn re-import the main script in each worker (CPython's
    ``multiprocessing.spawn.get_preparation_data``); a script read from stdin cannot be."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path and getattr(main, "__spec__", None) is None and not os.path.exists(path):
        raise EnvError(
            f"backend 'async' cannot start workers: the main script '{path}' is not a file "
            "that worker processes can import; run a script file or use backend sync"
        )


def _views(arrays: dict[str, Any], layout: Layout) -> dict[str, np.ndarray]:
    """Numpy views of the shared raw arrays."""
    return {
        name: np.frombuffer(arrays[name], dtype=np.uint8).view(dtype).reshape(shape)
        for name, (shape, dtype) in layout.items()
    }


def _worker(
    index: int,
    env_id: str,
    cfg: EnvConfig,
    evaluation: bool,
    lo: int,
    hi: int,
    render: bool,
    conn: Connection,
    arrays: dict[str, Any],
    layout: Layout,
) -> None:
    """Worker loop: make envs [lo, hi), then serve (command, payload) messages."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    from reprl.envs.family import resolve_env

    try:
        views = {k: v[lo:hi] for k, v in _views(arrays, layout).items()}
        family = resolve_env(env_id)
        envs = [family.make(env_id, cfg, evaluation, render) for _ in range(hi - lo)]
        actions = views.pop("actions")
        serial = SerialEnvs(
            envs, lives_key=family.lives_key, lives=views.pop("lives", None), family=family, **views
        )
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", None))
    while True:
        try:
            cmd, payload = conn.recv()
        except (EOFError, OSError):  # parent gone
            break
        try:
            result = None
            if cmd == "step":
                serial.step(actions)
            elif cmd == "reset":
                serial.reset(payload)
            elif cmd == "render":
                result = serial.render_first()
            elif cmd == "get_state":
                result = serial.get_state()
            elif cmd == "set_state":
                serial.set_state(payload)
            elif cmd == "close":
                serial.close()
                conn.send(("ok", None))
                break
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception:
            conn.send(("error", traceback.format_exc()))
            break
        conn.send(("ok", result))


def _shutdown(procs: list[BaseProcess], conns: list[Connection]) -> None:
    """Ask workers to close, then terminate those that do not exit."""
    for conn in conns:
        with contextlib.suppress(OSError):
            conn.send(("close", None))
    for proc in procs:
        proc.join(timeout=2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=2.0)
    for conn in conns:
        conn.close()


@VECTOR_BACKENDS.register("async")
class AsyncVectorEnv(CoreVectorEnv):
    """Subprocess vector env (see :class:`CoreVectorEnv` for the semantics)."""

    backend = "async"
    can_render = True
    POLL_S = 0.5
    """Seconds between liveness checks of a worker that has not answered yet."""

    def __init__(
        self,
        family: EnvFamily,
        env_id: str,
        cfg: EnvConfig,
        num_envs: int,
        seed: int,
        evaluation: bool,
        spec: EnvSpec,
        render: bool = False,
    ) -> None:
        super().__init__(spec, num_envs, seed, *family.score_transforms(cfg, evaluation))
        self._exact = family.exact_resume
        self._closed = False
        num_workers = min(num_envs, cfg.num_workers or os.cpu_count() or 1)
        bounds = np.linspace(0, num_envs, num_workers + 1).astype(int)
        self._slices = [(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]

        buffers = raw_buffers(spec, num_envs, family.lives_key is not None)
        if spec.discrete:
            buffers["actions"] = np.zeros(num_envs, np.int64)
        else:
            buffers["actions"] = np.zeros((num_envs, *spec.action_shape), np.float32)
        layout = {k: (v.shape, v.dtype.str) for k, v in buffers.items() if v is not None}
        _check_main_importable()
        ctx = _context()
        arrays = {k: ctx.RawArray("b", max(1, buffers[k].nbytes)) for k in layout}
        self._buf: dict[str, np.ndarray | None] = {"lives": None, **_views(arrays, layout)}
        self._procs: list[BaseProcess] = []
        self._conns: list[Connection] = []
        for w, (lo, hi) in enumerate(self._slices):
            parent, child = ctx.Pipe()
            args = (w, env_id, cfg, evaluation, lo, hi, render, child, arrays, layout)
            proc = ctx.Process(target=_worker, args=args, daemon=True, name=f"reprl-env-{w}")
            proc.start()
            child.close()  # so the parent's recv sees EOF when the worker dies
            self._procs.append(proc)
            self._conns.append(parent)
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._conns)
        for w in range(num_workers):
            try:
                self._recv(w)
            except EnvError as exc:
                if "died" not in str(exc):
                    raise
                raise EnvError(
                    f"{exc}; workers import the main module (forkserver): guard a script's "
                    "code with `if __name__ == '__main__':`"
                ) from None

    # ----------------------------------------------------------------- messaging
    def _crashed(self, w: int, reason: str) -> EnvError:
        lo, hi = self._slices[w]
        self.close()
        return EnvError(
            f"{self.spec.env_id}: async env worker {w} (envs {lo}..{hi - 1}) crashed: {reason}"
        )

    def _send_all(self, cmd: str, payloads: list[Any] | None = None) -> None:
        if self._closed:
            raise EnvError(f"{self.spec.env_id}: the async vector env is closed")
        for w, conn in enumerate(self._conns):
            try:
                conn.send((cmd, None if payloads is None else payloads[w]))
            except OSError as exc:
                raise self._crashed(w, f"cannot send to worker ({exc!r})") from None

    def _recv(self, w: int) -> Any:
        conn, proc = self._conns[w], self._procs[w]
        while not conn.poll(self.POLL_S):
            if not proc.is_alive() and not conn.poll():
                raise self._crashed(w, f"worker process died (exit code {proc.exitcode})")
        try:
            status, payload = conn.recv()
        except (EOFError, OSError):
            proc.join(timeout=1.0)
            raise self._crashed(w, f"worker process died (exit code {proc.exitcode})") from None
        if status == "error":
            raise self._crashed(w, f"\n{payload}")
        return payload

    def _call_all(self, cmd: str, payloads: list[Any] | None = None) -> list[Any]:
        self._send_all(cmd, payloads)
        return [self._recv(w) for w in range(len(self._conns))]

    def render_first(self) -> np.ndarray:
        if self._closed:
            raise EnvError(f"{self.spec.env_id}: the async vector env is closed")
        try:
            self._conns[0].send(("render", None))
        except OSError as exc:
            raise self._crashed(0, f"cannot send to worker ({exc!r})") from None
        return self._recv(0)

    # ----------------------------------------------------------------- backend hooks
    def _reset_envs(self, seeds: list[int] | None) -> tuple[np.ndarray, np.ndarray | None]:
        payloads = [None if seeds is None else seeds[lo:hi] for lo, hi in self._slices]
        self._call_all("reset", payloads)
        obs, _, _, _, lives = copy_raw(self._buf)
        return obs, lives

    def _step_envs(self, actions: np.ndarray) -> RawStep:
        self._buf["actions"][:] = actions
        self._call_all("step")
        return copy_raw(self._buf)

    def supports_exact_resume(self) -> bool:
        return self._exact

    def _get_env_states(self) -> list[dict[str, Any]]:
        return [state for states in self._call_all("get_state") for state in states]

    def _set_env_states(self, states: list[dict[str, Any]]) -> None:
        self._call_all("set_state", [states[lo:hi] for lo, hi in self._slices])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._finalizer()
