"""The Gradio page, end to end: a real headless Chromium (Debian's, driven by Playwright) asks the tiny run a
question and sees its answer; and the app's clear errors.

The browser test needs the `app` extra (gradio, playwright) and /usr/bin/chromium, both installed by
scripts/setup.sh. Without them it is skipped with the reason, except under CI=true, where it must run.
Set MEDCHAT_SCREENSHOT_DIR to keep the screenshot somewhere else than pytest's tmp dir.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT
from medchat.app import check_port
from medchat.config import ConfigError

CHROMIUM = os.environ.get("MEDCHAT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Headless on a machine without a display or outside network: no GPU, no sandbox (root in CI), and no
# background traffic that the closed network would refuse.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
QUESTION = "I have had a headache for three days."


def browser_or_skip() -> None:
    missing = [f"the {name} package (pip install -e '.[dev,app]')" for name in ("gradio", "playwright")
               if importlib.util.find_spec(name) is None]
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"a Chromium at {CHROMIUM} (apt-get install chromium; scripts/setup.sh does it as root)")
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: CI installs them with scripts/setup.sh, so this must not be skipped there")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_served(proc: subprocess.Popen, url: str, log, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the app exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the app did not answer on {url} within {timeout:.0f} s")


@pytest.fixture
def served_app(trained_run, tmp_path):
    browser_or_skip()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    log = tmp_path / "app.log"  # a file, not a pipe nobody drains while the app runs
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medchat.app", f"run_dir={trained_run}", f"port={port}", "max_new_tokens=24",
             "temperature=0"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_served(proc, url, log, timeout=240)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_browser_asks_a_question_and_sees_the_streamed_answer(served_app, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shot = tmp_path / "app_screenshot.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(served_app)
            expect(page.get_by_text("Not medical advice")).to_be_visible(timeout=30_000)
            expect(page.get_by_label("Temperature (0 = greedy)").first).to_be_visible()
            page.locator("#question textarea").fill(QUESTION)
            page.keyboard.press("Enter")
            user = page.locator('[data-testid="user"]').last
            bot = page.locator('[data-testid="bot"]').last
            expect(user).to_contain_text(QUESTION, timeout=30_000)
            expect(bot).to_have_text(re.compile(r"\S"), timeout=90_000)
            # While the answer streams, a stop button stands where the submit button was.
            expect(page.locator('[data-testid="submit-button"]')).to_be_visible(timeout=90_000)
            answer = bot.inner_text().strip()
            expect(user).to_be_in_viewport()
            expect(bot).to_be_in_viewport()
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert answer and answer != QUESTION and "Error" not in answer
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("MEDCHAT_SCREENSHOT_DIR"):
        shutil.copy(shot, os.environ["MEDCHAT_SCREENSHOT_DIR"])
    print(f"screenshot: {shot}\nanswer: {answer}")


def test_a_port_in_use_is_named_before_the_model_loads(trained_run, capsys, monkeypatch):
    from omegaconf import OmegaConf

    from medchat import app
    from medchat.inference import ChatModel

    monkeypatch.setattr(ChatModel, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"port={port}: 127.0.0.1:{port} is already in use"):
            check_port("127.0.0.1", port)
        with pytest.raises(SystemExit):
            app.run(OmegaConf.structured(app.AppConfig(run_dir=str(trained_run), port=port)))
        assert f"medchat.app: error: port={port}" in capsys.readouterr().err
    assert check_port("127.0.0.1", port) == port  # free again once the other program is gone
    assert check_port("127.0.0.1", 0) > 0


def test_the_chat_callback_streams_and_refuses_an_empty_question(trained_run):
    pytest.importorskip("gradio")
    import gradio as gr

    from medchat.app import respond_fn

    class Bot:  # the callback's contract with ChatModel, without a model
        def conversation(self, history, question):
            from medchat.inference import ChatModel

            return ChatModel.conversation(self, history, question)

        system_prompt = None

        def stream(self, messages, settings):
            assert settings.temperature == 0.0 and settings.max_new_tokens == 32
            yield from [" Rest", " and", " fluids."]

    respond = respond_fn(Bot())
    assert list(respond("Sore throat", [], 32, 0.0, 0.9, 1.1)) == ["Rest", "Rest and", "Rest and fluids."]
    with pytest.raises(gr.Error, match="prompt is empty"):
        list(respond("   ", [], 32, 0.0, 0.9, 1.1))
