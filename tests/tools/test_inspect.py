"""``reprl inspect``: the recorded data (data.json) for policy, RND and Q agents, the CLI and
its ``--serve``, and the page itself in a real headless Chromium (Playwright)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from reprl.cli import main
from reprl.config import load_config
from reprl.tools.inspect import inspect_checkpoint
from reprl.train import train

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
QUIET = ["logger.progress=false", "logger.tensorboard=false"]


def _train(run: Path, overrides: list[str]) -> Path:
    train(load_config(overrides + QUIET + [f"run_dir={run}"]))
    return run


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(
        tmp_path_factory.mktemp("inspect") / "cartpole",
        ["experiment=ppo_cartpole", "total_steps=2048", "eval.every_steps=4096"],
    )


@pytest.fixture(scope="module")
def atari_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # No evaluation: a sampled Breakout episode would take longer than the training.
    return _train(
        tmp_path_factory.mktemp("inspect") / "atari",
        [
            "experiment=ppo_atari",
            "env.num_envs=2",
            "agent.num_steps=16",
            "total_steps=64",
            "eval.every_steps=1000000",
            "eval.at_end=false",
            "checkpoint.every_steps=64",
        ],
    )


def _finite(values: list[Any]) -> bool:
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    return flat.size > 0 and bool(np.isfinite(flat).all())


def _data(out: Path) -> dict[str, Any]:
    return json.loads((out / "data.json").read_text())


# ---------------------------------------------------------------------------------------------
# data.json, no browser
# ---------------------------------------------------------------------------------------------
def test_policy_agent_data(cartpole_run: Path, tmp_path: Path) -> None:
    out = inspect_checkpoint(cartpole_run, episodes=2, out=tmp_path / "page", max_steps=30)
    data = _data(out)
    assert data["env_id"] == "CartPole-v1" and data["value_names"] == ["value"]
    assert len(data["episodes"]) == 2
    meanings = data["action_meanings"]
    for ep in data["episodes"]:
        steps = ep["steps"]
        n = ep["length"]
        assert 1 <= n <= 30 and (ep["ended"] or n == 30)
        for key in ("action", "action_label", "probs", "value", "reward", "obs", "saliency"):
            assert len(steps[key]) == n, key
        assert [meanings[a] for a in steps["action"]] == steps["action_label"]
        assert set(steps["action_label"]) <= {"PUSH_LEFT", "PUSH_RIGHT"}
        assert _finite(steps["value"]) and _finite(steps["probs"]) and _finite(steps["saliency"])
        assert all(len(v) == 1 for v in steps["value"])
        assert np.allclose(np.sum(steps["probs"], axis=1), 1.0, atol=1e-5)
        assert all(len(o) == 4 and len(s) == 4 for o, s in zip(steps["obs"], steps["saliency"]))
        assert steps["reward"] == [1.0] * n  # CartPole: +1 per step, evaluation unclipped
        assert ep["return"] == pytest.approx(float(n))
        assert "intrinsic_reward" not in steps
    # Deterministic evaluation acts greedily on the recorded probabilities.
    ep = data["episodes"][0]["steps"]
    assert ep["action"] == [int(np.argmax(p)) for p in ep["probs"]]
    page = (out / "index.html").read_text()
    assert "/*__DATA__*/" not in page and "data:image/jpeg;base64," in page
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(https?:)?//", page)


def test_rnd_intrinsic_rewards_match_the_checkpoint(tmp_path: Path) -> None:
    run = _train(
        tmp_path / "rnd",
        ["experiment=ppo_rnd_cartpole", "total_steps=1024", "eval.every_steps=4096"],
    )
    data = _data(inspect_checkpoint(run, episodes=1, out=tmp_path / "page", max_steps=20))
    assert data["value_names"] == ["extrinsic", "intrinsic"] and data["intrinsic"]
    steps = data["episodes"][0]["steps"]
    assert all(len(v) == 2 for v in steps["value"]) and _finite(steps["value"])
    assert _finite(steps["intrinsic_reward"]) and max(steps["intrinsic_reward"]) > 0
    # Recompute the reward of each reached observation with the checkpoint's RND: the
    # inspector must use the trained predictor and the saved reward statistics.
    from reprl.evaluation.cli import load_agent
    from reprl.runs.checkpoint import to_numpy

    agent, _, state = load_agent(run)
    aux = agent.auxiliaries["rnd"]
    aux.load_state_dict(state["agent"]["aux"]["rnd"]["weights"])
    aux.load_extra_state(to_numpy(state["agent"]["aux"]["rnd"]["extra"]))
    obs = torch.tensor(steps["obs"][1:], dtype=torch.float32)[None]
    with torch.no_grad():
        error = aux.rnd.prediction_error(obs).numpy()
    expected = error / (math.sqrt(aux.rnd.reward_rms.var) + 1e-8)
    assert np.allclose(steps["intrinsic_reward"][:-1], expected, rtol=1e-4, atol=1e-6)


def test_q_agent_records_q_values(tmp_path: Path) -> None:
    run = _train(
        tmp_path / "dqn", ["experiment=dqn_cartpole", "total_steps=1024", "eval.every_steps=4096"]
    )
    data = _data(inspect_checkpoint(run, episodes=1, out=tmp_path / "page", max_steps=10))
    steps = data["episodes"][0]["steps"]
    assert data["value_names"] == ["max Q"] and "probs" not in steps
    assert all(len(q) == 2 for q in steps["q"]) and _finite(steps["q"])
    assert [v[0] for v in steps["value"]] == pytest.approx([max(q) for q in steps["q"]])
    assert steps["action"] == [int(np.argmax(q)) for q in steps["q"]]  # greedy evaluation


def test_cli_default_folder_and_errors(
    cartpole_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(cartpole_run), "--max-steps", "3"]) == 0
    assert (cartpole_run / "inspect" / "index.html").is_file()
    assert _data(cartpole_run / "inspect")["episodes"][0]["length"] <= 3
    assert main(["inspect", str(cartpole_run), "--episodes", "0"]) == 2
    assert main(["inspect", str(cartpole_run / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--episodes" in err[0] and "no such run folder" in err[1]
    assert "Traceback" not in "".join(err)


def test_serve_prints_url_and_stops_on_ctrl_c(
    cartpole_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a free port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fetched: list[bytes] = []

    def fetch_then_ctrl_c() -> None:
        url = f"http://127.0.0.1:{port}/index.html"
        try:
            for _ in range(100):  # until the server is up
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        fetched.append(response.read())
                    break
                except OSError:
                    time.sleep(0.1)
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, delivered to the main thread

    thread = threading.Thread(target=fetch_then_ctrl_c)
    out = tmp_path / "served"
    args = ["inspect", str(cartpole_run), "--max-steps", "2", "--out", str(out)]
    thread.start()
    assert main([*args, "--serve", "--port", str(port)]) == 0  # returns on Ctrl-C
    thread.join(timeout=30)
    assert fetched and b"reprl inspect" in fetched[0]
    stdout = capsys.readouterr().out
    assert f"http://127.0.0.1:{port}/" in stdout and "stopped" in stdout


# ---------------------------------------------------------------------------------------------
# the page in a headless browser
# ---------------------------------------------------------------------------------------------
def _browser() -> tuple[Any, str]:
    """Playwright's ``sync_playwright`` and the system Chromium (skip without either)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright==1.65.2)")
    executable = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if executable is None:
        pytest.skip(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return sync_playwright, executable


def _check_page(page: Any, out: Path) -> None:
    """Load the page, scrub through it and compare what it shows with data.json."""
    data = _data(out)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((out / "index.html").as_uri())
    for ep_index, ep in enumerate(data["episodes"]):
        page.select_option("#episode", str(ep_index))
        n, labels = ep["length"], ep["steps"]["action_label"]
        assert page.get_attribute("#scrubber", "max") == str(n - 1)
        shown: list[tuple[str, str | None]] = []
        for t in sorted({0, n // 3, n // 2, n - 1}):
            page.eval_on_selector(
                "#scrubber", f"e => {{ e.value = {t}; e.dispatchEvent(new Event('input')); }}"
            )
            assert page.inner_text("#step-label") == f"step {t + 1} / {n}"
            assert page.inner_text("#action-label") == labels[t]
            shown.append((page.inner_text("#step-label"), page.get_attribute("#frame", "src")))
        assert len({s for s, _ in shown}) == len(shown)
        # The frame changes with the step (two frames of a moving game differ somewhere).
        assert len({src for _, src in shown}) > 1
        page.click("#next")
        assert page.inner_text("#step-label") == f"step {n} / {n}"  # stays at the last step
        page.click("#first")
        page.click("#next")
        assert page.inner_text("#step-label") == f"step 2 / {n}"
        assert page.inner_text("#action-label") == labels[1]
    assert errors == []


def test_page_in_chromium(cartpole_run: Path, atari_run: Path, tmp_path: Path) -> None:
    sync_playwright, executable = _browser()
    cart = inspect_checkpoint(cartpole_run, episodes=2, out=tmp_path / "cart", max_steps=30)
    atari = inspect_checkpoint(atari_run, episodes=1, out=tmp_path / "atari", max_steps=30)
    atari_data = _data(atari)
    assert atari_data["image_obs"] and atari_data["action_meanings"][:2] == ["NOOP", "FIRE"]
    steps = atari_data["episodes"][0]["steps"]
    stacks = steps["obs_images"]
    assert all(len(ids) == 4 for ids in stacks)  # 4 stacked frames per step, oldest first
    # Each frame is stored once: the next stack shifts this one's last three frames forward.
    assert all(b[:3] == a[1:] for a, b in zip(stacks[:-1], stacks[1:]))
    assert {"saliency_image", "activation_image", "channels_image"} <= set(steps)
    assert (atari / "index.html").stat().st_size < 2_000_000
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            for out in (cart, atari):
                _check_page(browser.new_page(), out)
            page = browser.new_page()
            page.goto((atari / "index.html").as_uri())
            assert page.locator("#obs img").count() == 4
            assert page.locator("#saliency img").count() == 1
            probs = [float(x) for x in page.locator("#dist tr td:last-child").all_inner_texts()]
            assert probs == pytest.approx(steps["probs"][0], abs=1e-4)
        finally:
            browser.close()
